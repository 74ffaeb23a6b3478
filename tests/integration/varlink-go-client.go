// SPDX-License-Identifier: LGPL-2.1-or-later
//
// A client of io.noiommud.Broker written with a Varlink implementation nobody on this project
// wrote: Debian's github.com/varlink/go (golang-github-varlink-go-dev 0.4.0). Built and run by
// test-varlink-go.py, offline (GO111MODULE=off, GOPATH=/usr/share/gocode).
//
// What varlink-go 0.4.0 can and cannot do, and so what each step exercises:
//   - Connection.GetInfo/GetInterfaceDescription/Call/Send speak the protocol (framing, errors,
//     "more", "oneway") and are used for everything below but the fd.
//   - Its Connection reads with net.Conn.Read and exposes neither the socket nor any control
//     data, so it cannot receive SCM_RIGHTS: the memfd of an AllocateMemory reply it reads is
//     discarded by the kernel. The reply itself (id, size, segment table, fd index) is parsed by
//     varlink-go; the fd is checked on a second connection that reads with the standard
//     library's UnixConn.ReadMsgUnix (no varlink-go there: framing by hand).
//   - Its interface parser (varlink/idl) rejects capital letters in interface names, which the
//     Varlink spec allows since 2021 ("io.noiommud.Broker"); the client therefore uses no
//     generated bindings, only the untyped Call/Send API. The parse is attempted and reported.
//
// Prints one line per check ("ok - ...") and exits 1 at the first failure.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/varlink/go/varlink"
	"github.com/varlink/go/varlink/idl"
)

const (
	broker  = "io.noiommud.Broker"
	service = "org.varlink.service"
	mib     = 1 << 20

	fGetSeals   = 1034 // F_GET_SEALS (F_LINUX_SPECIFIC_BASE + 10), fcntl(2)
	fSealShrink = 0x2
	fSealGrow   = 0x4
)

var (
	socketPath string
	// One deadline for the whole run: every call of varlink-go takes a context.
	deadline context.Context
)

func fail(format string, args ...interface{}) {
	fmt.Printf("not ok - "+format+"\n", args...)
	os.Exit(1)
}

func ok(format string, args ...interface{}) {
	fmt.Printf("ok - "+format+"\n", args...)
}

func ctx() context.Context {
	return deadline
}

func connect() *varlink.Connection {
	c, err := varlink.NewConnection(ctx(), "unix:"+socketPath)
	if err != nil {
		fail("connect to %s: %v", socketPath, err)
	}
	return c
}

type segment struct {
	Offset     int64 `json:"offset"`
	Length     int64 `json:"length"`
	DmaAddress int64 `json:"dmaAddress"`
}

type allocation struct {
	Memory       string    `json:"memory"`
	Size         int64     `json:"size"`
	HugepageSize int64     `json:"hugepageSize"`
	NumaNode     int64     `json:"numaNode"`
	AddressKind  string    `json:"addressKind"`
	Segments     []segment `json:"segments"`
	Fd           int       `json:"fd"`
}

func checkAllocation(a *allocation, size int64) {
	if len(a.Memory) != 32 || a.Size != size || a.Fd != 0 || len(a.Segments) == 0 {
		fail("AllocateMemory reply: %+v", a)
	}
	var next int64
	for _, s := range a.Segments {
		if s.Offset != next || s.Length <= 0 || s.DmaAddress <= 0 {
			fail("AllocateMemory segment table: %+v", a.Segments)
		}
		next += s.Length
	}
	if next != size {
		fail("segment table covers %d bytes of %d", next, size)
	}
}

// The first message of a varlink-go call that was sent oneway must never be read: the next
// call on the same connection must get its own reply.
func checkOneway(c *varlink.Connection, what string, method string, params interface{}) {
	if _, err := c.Send(ctx(), method, params, varlink.Oneway); err != nil {
		fail("oneway %s: Send: %v", what, err)
	}
	var info struct {
		Interfaces []string `json:"interfaces"`
	}
	if err := c.Call(ctx(), service+".GetInfo", nil, &info); err != nil {
		fail("after oneway %s, GetInfo got a stray reply: %v", what, err)
	}
	if len(info.Interfaces) == 0 {
		fail("after oneway %s, GetInfo's reply has no interfaces: %+v", what, info)
	}
	ok("oneway %s: not answered; the next call got its own reply", what)
}

func expectError(err error, name string) *varlink.Error {
	if err == nil {
		fail("expected %s, the call succeeded", name)
	}
	e, isErr := err.(*varlink.Error)
	if !isErr || e.Name != name {
		fail("expected %s, got %T %v", name, err, err)
	}
	return e
}

// AllocateMemory on a connection of our own that can receive the memfd: the standard library's
// ReadMsgUnix with room for control data.
func allocateWithFd(size int64) {
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: socketPath, Net: "unix"})
	if err != nil {
		fail("raw connect: %v", err)
	}
	defer conn.Close()
	call, _ := json.Marshal(map[string]interface{}{
		"method":     broker + ".AllocateMemory",
		"parameters": map[string]interface{}{"size": size},
	})
	if _, err := conn.Write(append(call, 0)); err != nil {
		fail("raw write: %v", err)
	}
	buf := make([]byte, 1<<20)
	oob := make([]byte, syscall.CmsgSpace(4*4))
	var msg []byte
	var fds []int
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for len(msg) == 0 || msg[len(msg)-1] != 0 {
		n, oobn, flags, _, err := conn.ReadMsgUnix(buf, oob)
		if err != nil || n == 0 {
			fail("raw read: %v (n=%d)", err, n)
		}
		if flags&syscall.MSG_CTRUNC != 0 {
			fail("MSG_CTRUNC on the AllocateMemory reply")
		}
		if oobn > 0 {
			cmsgs, err := syscall.ParseSocketControlMessage(oob[:oobn])
			if err != nil {
				fail("control message: %v", err)
			}
			for _, cm := range cmsgs {
				got, err := syscall.ParseUnixRights(&cm)
				if err != nil {
					fail("SCM_RIGHTS: %v", err)
				}
				fds = append(fds, got...)
			}
		}
		msg = append(msg, buf[:n]...)
	}
	var reply struct {
		Parameters allocation `json:"parameters"`
		Error      string     `json:"error"`
	}
	if err := json.Unmarshal(msg[:len(msg)-1], &reply); err != nil || reply.Error != "" {
		fail("raw AllocateMemory reply %q: %v", msg, err)
	}
	checkAllocation(&reply.Parameters, size)
	if len(fds) != 1 {
		fail("AllocateMemory reply carried %d fds, want 1", len(fds))
	}
	fd := fds[0]
	defer syscall.Close(fd)

	link, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
	if err != nil || !strings.HasPrefix(link, "/memfd:") {
		fail("the fd is not a memfd: %q %v", link, err)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil || st.Size != size {
		fail("memfd size %d, want %d (%v)", st.Size, size, err)
	}
	seals, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), fGetSeals, 0)
	if errno != 0 || seals&(fSealShrink|fSealGrow) != fSealShrink|fSealGrow {
		fail("memfd seals %#x (%v), want SHRINK|GROW", seals, errno)
	}
	mem, err := syscall.Mmap(fd, 0, int(size), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		fail("mmap of the memfd: %v", err)
	}
	mem[0], mem[size-1] = 0x5a, 0xa5
	syscall.Munmap(mem)
	ok("AllocateMemory (raw ReadMsgUnix): fd is %s, %d bytes, sealed, mappable", link, size)
}

func hasMethod(i *idl.IDL, name string) bool {
	for _, m := range i.Methods {
		if m.Name == name {
			return true
		}
	}
	return false
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: varlink-go-client SOCKET VERSION")
		os.Exit(2)
	}
	socketPath = os.Args[1]
	wantVersion := os.Args[2]
	var cancel context.CancelFunc
	deadline, cancel = context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	c := connect()
	defer c.Close()

	// org.varlink.service through varlink-go's own helpers
	var vendor, product, version, url string
	var interfaces []string
	if err := c.GetInfo(ctx(), &vendor, &product, &version, &url, &interfaces); err != nil {
		fail("GetInfo: %v", err)
	}
	if version != wantVersion || strings.Join(interfaces, ",") != broker+","+service &&
		strings.Join(interfaces, ",") != service+","+broker {
		fail("GetInfo: version %q (want %q), interfaces %v", version, wantVersion, interfaces)
	}
	ok("GetInfo: %s %s %s, interfaces %v", vendor, product, version, interfaces)

	desc, err := c.GetInterfaceDescription(ctx(), broker)
	if err != nil || !strings.Contains(desc, "interface "+broker+"\n") ||
		!strings.Contains(desc, "method AllocateMemory(") {
		fail("GetInterfaceDescription %s: %v %q", broker, err, desc)
	}
	ok("GetInterfaceDescription %s: %d bytes", broker, len(desc))

	sdesc, err := c.GetInterfaceDescription(ctx(), service)
	if err != nil {
		fail("GetInterfaceDescription %s: %v", service, err)
	}
	if _, err := idl.New(sdesc); err != nil {
		fail("varlink-go's parser rejects %s: %v", service, err)
	}
	ok("varlink-go's idl parser accepts %s", service)
	if parsed, err := idl.New(desc); err != nil {
		// The known limitation of 0.4.0 (see the top of this file): reported, not hidden.
		fmt.Printf("# varlink-go's idl parser rejects %s: %v (capital letters in the "+
			"interface name; the spec allows them since 2021)\n", broker, err)
	} else if parsed.Name != broker || !hasMethod(parsed, "AllocateMemory") {
		fail("varlink-go parsed %s wrongly: %s", broker, parsed.Name)
	} else {
		ok("varlink-go's idl parser accepts %s", broker)
	}

	var list struct {
		Devices []map[string]interface{} `json:"devices"`
	}
	if err := c.Call(ctx(), broker+".ListDevices", map[string]interface{}{}, &list); err != nil {
		fail("ListDevices: %v", err)
	}
	if list.Devices == nil {
		fail("ListDevices: no devices array")
	}
	ok("ListDevices: %d devices", len(list.Devices))

	// AllocateMemory through varlink-go: the reply is parsed, the memfd is lost (see above);
	// FreeMemory with the parsed id proves the id is the daemon's.
	var a allocation
	if err := c.Call(ctx(), broker+".AllocateMemory", map[string]interface{}{"size": 2 * mib}, &a); err != nil {
		fail("AllocateMemory: %v", err)
	}
	checkAllocation(&a, 2*mib)
	if err := c.Call(ctx(), broker+".FreeMemory", map[string]interface{}{"memory": a.Memory}, &struct{}{}); err != nil {
		fail("FreeMemory %s: %v", a.Memory, err)
	}
	ok("AllocateMemory (varlink-go, fd not received): %s, %d segments; FreeMemory ok", a.Memory, len(a.Segments))

	allocateWithFd(4 * mib)

	// errors, decoded by varlink-go
	err = c.Call(ctx(), broker+".NoSuchMethod", map[string]interface{}{}, &struct{}{})
	if e, isMNF := err.(*varlink.MethodNotFound); !isMNF || e.Method != broker+".NoSuchMethod" {
		fail("unknown method: %T %v", err, err)
	}
	err = c.Call(ctx(), "org.example.Nope.Method", map[string]interface{}{}, &struct{}{})
	if _, isINF := err.(*varlink.InterfaceNotFound); !isINF {
		fail("unknown interface: %T %v", err, err)
	}
	err = c.Call(ctx(), broker+".AllocateMemory", map[string]interface{}{"size": "big"}, &struct{}{})
	if e, isIP := err.(*varlink.InvalidParameter); !isIP || e.Parameter != "size" {
		fail("invalid parameter: %T %v", err, err)
	}
	e := expectError(c.Call(ctx(), broker+".FreeMemory",
		map[string]interface{}{"memory": strings.Repeat("0", 32)}, &struct{}{}), broker+".NoSuchMemory")
	var p map[string]string
	if raw, isRaw := e.Parameters.(*json.RawMessage); !isRaw || json.Unmarshal(*raw, &p) != nil ||
		p["memory"] != strings.Repeat("0", 32) {
		fail("NoSuchMemory parameters: %v", e.Parameters)
	}
	expectError(c.Call(ctx(), broker+".Monitor", map[string]interface{}{}, &struct{}{}),
		service+".ExpectedMore")
	ok("errors: MethodNotFound, InterfaceNotFound, InvalidParameter, NoSuchMemory, ExpectedMore")

	// oneway, on the same connection as everything above
	checkOneway(c, "GetInfo", service+".GetInfo", nil)
	checkOneway(c, "unknown method", broker+".NoSuchMethod", map[string]interface{}{})
	checkOneway(c, "unknown interface", "org.example.Nope.Method", map[string]interface{}{})
	checkOneway(c, "AllocateMemory", broker+".AllocateMemory", map[string]interface{}{"size": 2 * mib})
	checkOneway(c, "AcquireDevice", broker+".AcquireDevice", map[string]interface{}{"device": "0000:00:04.0"})
	checkOneway(c, "Monitor", broker+".Monitor", map[string]interface{}{})

	// "more": varlink-go's Continues flag on Monitor's stream
	m := connect()
	receive, err := m.Send(ctx(), broker+".Monitor", map[string]interface{}{}, varlink.More)
	if err != nil {
		fail("Monitor: %v", err)
	}
	var ev struct {
		Event string `json:"event"`
	}
	flags, err := receive(ctx(), &ev)
	if err != nil || ev.Event != "subscribed" || flags&varlink.Continues == 0 {
		fail("Monitor first reply: %v %+v flags %d", err, ev, flags)
	}
	m.Close()
	ok("Monitor with more: %q, continues", ev.Event)
}
