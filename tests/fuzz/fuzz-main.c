/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Replays fuzzer inputs without libFuzzer: every file named on the command line, or every file
 * in each directory named, goes through LLVMFuzzerTestOneInput() once. A crash or a sanitizer
 * report fails the test.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path) {
        FILE *f = fopen(path, "re");
        uint8_t *buf;
        long n;

        if (!f) {
                fprintf(stderr, "%s: %s\n", path, strerror(errno));
                return -1;
        }
        if (fseek(f, 0, SEEK_END) < 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) < 0) {
                fclose(f);
                return -1;
        }
        buf = malloc((size_t) n + 1);
        if (!buf || fread(buf, 1, (size_t) n, f) != (size_t) n) {
                free(buf);
                fclose(f);
                return -1;
        }
        fclose(f);
        (void) LLVMFuzzerTestOneInput(buf, (size_t) n);
        free(buf);
        return 0;
}

int main(int argc, char *argv[]) {
        unsigned count = 0;

        for (int i = 1; i < argc; i++) {
                struct stat st;

                if (stat(argv[i], &st) < 0) {
                        fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
                        return EXIT_FAILURE;
                }
                if (S_ISDIR(st.st_mode)) {
                        DIR *d = opendir(argv[i]);
                        struct dirent *de;

                        if (!d)
                                return EXIT_FAILURE;
                        while ((de = readdir(d))) {
                                char path[4096];

                                if (de->d_name[0] == '.')
                                        continue;
                                (void) snprintf(path, sizeof(path), "%s/%s", argv[i], de->d_name);
                                if (run_file(path) < 0) {
                                        closedir(d);
                                        return EXIT_FAILURE;
                                }
                                count++;
                        }
                        closedir(d);
                } else {
                        if (run_file(argv[i]) < 0)
                                return EXIT_FAILURE;
                        count++;
                }
        }
        printf("replayed %u inputs\n", count);
        return count > 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
