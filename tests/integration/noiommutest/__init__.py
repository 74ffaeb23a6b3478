# SPDX-License-Identifier: LGPL-2.1-or-later
"""The noiommud integration-test harness, one job per module (docs/testing.md):

  common   paths, Skip/run (exit 0 / 1 / 77), waiting, small /proc readers, PR_SET_PDEATHSIG
  pool     the machine's 2 MiB hugepage pool: the run lock, the reservation, HugePages_Free
  oracles  what is true outside the daemon: pagemap addresses, its fds, its hugetlb mappings
  journal  the native journal protocol and sd_notify, as the daemon's journald (JournalCapture)
  varlink  a Varlink client connecting as any uid (Connection) and the method names
  bus      the private system bus (dbus-daemon)
  polkit   the test rules, the real polkitd in a mount namespace, python3-dbusmock's polkitd
  ctl      noiommuctl as any uid
  env      Environment: puts the above together around one daemon, with subtests and teardown

tests/integration/harness.py re-exports every name of these modules that it had before the
split, so `import harness as H` keeps working; new code may import the modules directly.
Each module is importable on its own (they only import each other downwards: common first,
env last).
"""
