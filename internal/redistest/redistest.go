// Package redistest starts throwaway real redis-server processes for tests:
// a single node on a unix socket, or a Redis Cluster on free loopback ports.
// Every process and directory is removed when the test ends.
//
// When redis-server is not installed the test fails with a one-line reason,
// never skips: a green run that skipped every Redis test would prove
// nothing. `make deps` (or `make test`) installs it.
package redistest

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is one running redis-server.
type Server struct {
	Addr string // host:port, or the socket path for a unix server
	Unix bool
	// Username and Password authenticate the helper's own clients (for a
	// server started with an ACL file).
	Username, Password string

	tb   testing.TB
	dir  string
	args []string
	mu   sync.Mutex
	cmd  *exec.Cmd
	out  *bytes.Buffer
}

// Binary is the path of redis-server, for a test that runs it itself. The
// test fails when it is not installed.
func Binary(tb testing.TB) string {
	tb.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		tb.Fatal("redis-server is not installed: run `make deps` (or apt-get install -y redis-server); the Redis tests need a real one")
	}
	return path
}

func tempDir(tb testing.TB) string {
	tb.Helper()
	// Not tb.TempDir(): unix socket paths must stay under ~100 bytes and
	// test names make those paths long.
	dir, err := os.MkdirTemp("", "r")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// Start runs a single redis-server on a unix socket, without persistence
// unless extra arguments (which override the defaults) turn it on.
func Start(tb testing.TB, extra ...string) *Server {
	tb.Helper()
	Binary(tb)
	dir := tempDir(tb)
	sock := filepath.Join(dir, "r.sock")
	s := &Server{Addr: sock, Unix: true, tb: tb, dir: dir,
		args: append([]string{"--port", "0", "--unixsocket", sock, "--save", "", "--appendonly", "no", "--dir", dir}, extra...)}
	s.start()
	tb.Cleanup(s.Kill)
	return s
}

// StartConfig runs redis-server with the configuration file conf (as a
// deployment would), on a unix socket in a fresh directory that also serves
// as its dir; extra arguments override the file. user and password are what
// the helper authenticates with.
func StartConfig(tb testing.TB, conf, user, password string, extra ...string) *Server {
	tb.Helper()
	Binary(tb)
	dir := tempDir(tb)
	sock := filepath.Join(dir, "r.sock")
	args := append([]string{conf, "--port", "0", "--unixsocket", sock, "--dir", dir}, extra...)
	s := &Server{Addr: sock, Unix: true, tb: tb, dir: dir, args: args, Username: user, Password: password}
	s.start()
	tb.Cleanup(s.Kill)
	return s
}

// URL is the server's address as a redis:// or unix:// URL.
func (s *Server) URL() string {
	if s.Unix {
		return "unix://" + s.Addr
	}
	return "redis://" + s.Addr + "/0"
}

// Client returns a new client to this server, closed at the end of the test.
func (s *Server) Client() *redis.Client {
	o := &redis.Options{Addr: s.Addr, Username: s.Username, Password: s.Password}
	if s.Unix {
		o.Network = "unix"
	}
	c := redis.NewClient(o)
	s.tb.Cleanup(func() { c.Close() })
	return c
}

func (s *Server) start() {
	s.tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.out = new(bytes.Buffer)
	s.cmd = exec.Command(Binary(s.tb), s.args...)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		s.tb.Fatalf("cannot start redis-server: %v", err)
	}
	c := s.rawClient()
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			s.cmd.Process.Kill()
			s.tb.Fatalf("redis-server did not answer within 10s: %v\n%s", err, s.out)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *Server) rawClient() *redis.Client {
	o := &redis.Options{Addr: s.Addr, MaxRetries: -1, Username: s.Username, Password: s.Password}
	if s.Unix {
		o.Network = "unix"
	}
	return redis.NewClient(o)
}

// info runs INFO section on s with a client of its own.
func (s *Server) info(ctx context.Context, section string) (string, error) {
	cl := s.rawClient()
	defer cl.Close()
	return cl.Info(ctx, section).Result()
}

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Signal(sig)
	}
}

// Pause freezes the server (SIGSTOP): connections stay open, nothing answers.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume continues a paused server (SIGCONT).
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

// Kill stops the server at once (SIGKILL) and waits for it; safe to call
// twice.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGCONT)
	s.cmd.Process.Kill()
	s.cmd.Wait()
	s.cmd = nil
}

// Restart starts a killed server again with the same arguments, address
// and directory (so with whatever it persisted there).
func (s *Server) Restart() {
	s.tb.Helper()
	s.Kill()
	s.start()
}

// Cluster is a running Redis Cluster.
type Cluster struct {
	Nodes []*Server
	tb    testing.TB
}

// Addrs lists every node's host:port.
func (c *Cluster) Addrs() []string {
	a := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		a[i] = n.Addr
	}
	return a
}

// FlushAll empties every master.
func (c *Cluster) FlushAll(ctx context.Context) error {
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	defer cc.Close()
	return cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		return m.FlushAll(ctx).Err()
	})
}

// StartCluster runs a Redis Cluster of masters masters, each with replicas
// replicas, on free loopback ports, and waits until every node reports the
// cluster healthy.
func StartCluster(tb testing.TB, masters, replicas int) *Cluster {
	tb.Helper()
	Binary(tb)
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		tb.Fatal("redis-cli is not installed (it comes with redis-server)")
	}
	dir := tempDir(tb)
	n := masters * (1 + replicas)
	c := &Cluster{tb: tb}
	ports := freePorts(tb, n)
	for _, p := range ports {
		ps := strconv.Itoa(p)
		s := &Server{Addr: "127.0.0.1:" + ps, tb: tb, dir: dir, args: []string{
			"--port", ps, "--bind", "127.0.0.1", "--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(dir, "nodes-"+ps+".conf"),
			"--cluster-node-timeout", "1000", "--save", "", "--appendonly", "no", "--dir", dir,
			// Replicas sync at once rather than after the default 5 s, so
			// a failover test does not kill a master before its replica
			// has any data.
			"--repl-diskless-sync-delay", "0",
		}}
		s.start()
		tb.Cleanup(s.Kill)
		c.Nodes = append(c.Nodes, s)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		tb.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	c.WaitHealthy(20 * time.Second)
	if replicas > 0 {
		c.waitReplicasInSync(20 * time.Second)
	}
	return c
}

// waitReplicasInSync waits until every replica reports its link to its
// master up: before that a replica has no data to take over with.
func (c *Cluster) waitReplicasInSync(timeout time.Duration) {
	c.tb.Helper()
	c.poll(timeout, 50*time.Millisecond, "replicas not in sync", func() error {
		synced, total := 0, 0
		for _, n := range c.Nodes {
			info, err := n.info(context.Background(), "replication")
			if err != nil || !strings.Contains(info, "role:slave") {
				continue
			}
			total++
			if strings.Contains(info, "master_link_status:up") {
				synced++
			}
		}
		if total == 0 || synced < total {
			return fmt.Errorf("%d of %d replicas in sync", synced, total)
		}
		return nil
	})
}

// WaitReplicated waits until every replica has acknowledged every write its
// master has taken so far. Replication is asynchronous: a master killed before
// its replica caught up takes its last writes with it, so a test that kills a
// master calls this first.
func (c *Cluster) WaitReplicated(timeout time.Duration) {
	c.tb.Helper()
	c.poll(timeout, 20*time.Millisecond, "replicas behind their masters", c.replicationLag)
}

// replicationLag says how many replicas have an acknowledged offset behind
// their master's replication offset; nil when none.
func (c *Cluster) replicationLag() error {
	lagging := 0
	for _, n := range c.liveNodes() {
		info, err := n.info(context.Background(), "replication")
		if err != nil {
			return err
		}
		if !strings.Contains(info, "role:master") {
			continue
		}
		var offset int64 = -1
		var acked []int64
		for _, line := range strings.Split(info, "\r\n") {
			if v, ok := strings.CutPrefix(line, "master_repl_offset:"); ok {
				offset, _ = strconv.ParseInt(v, 10, 64)
			}
			if strings.HasPrefix(line, "slave") && strings.Contains(line, "offset=") {
				for _, kv := range strings.Split(line[strings.IndexByte(line, ':')+1:], ",") {
					if v, ok := strings.CutPrefix(kv, "offset="); ok {
						o, _ := strconv.ParseInt(v, 10, 64)
						acked = append(acked, o)
					}
				}
			}
		}
		for _, o := range acked {
			if o < offset {
				lagging++
			}
		}
	}
	if lagging > 0 {
		return fmt.Errorf("%d lagging", lagging)
	}
	return nil
}

// WaitHealthy waits until every live node says cluster_state:ok and a cluster
// client can write to every master.
func (c *Cluster) WaitHealthy(timeout time.Duration) {
	c.tb.Helper()
	c.poll(timeout, 50*time.Millisecond, "redis cluster not healthy", c.healthy)
}

func (c *Cluster) healthy() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for _, n := range c.liveNodes() {
		cl := n.rawClient()
		info, err := cl.ClusterInfo(ctx).Result()
		cl.Close()
		if err != nil {
			return err
		}
		if !strings.Contains(info, "cluster_state:ok") {
			return fmt.Errorf("%s: cluster_state not ok", n.Addr)
		}
	}
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), MaxRetries: -1})
	defer cc.Close()
	return cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		return m.Ping(ctx).Err()
	})
}

// poll calls cond every interval until it returns nil, and fails the test
// with what and cond's last error once timeout has passed.
func (c *Cluster) poll(timeout, every time.Duration, what string, cond func() error) {
	c.tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.tb.Fatalf("%s after %v: %v", what, timeout, err)
		}
		time.Sleep(every)
	}
}

// liveNodes returns the nodes whose process is running (not killed).
func (c *Cluster) liveNodes() []*Server {
	var live []*Server
	for _, n := range c.Nodes {
		n.mu.Lock()
		alive := n.cmd != nil
		n.mu.Unlock()
		if alive {
			live = append(live, n)
		}
	}
	return live
}

// freePorts finds n loopback ports p whose cluster bus ports p+10000 are free
// too. Both are below Linux's default ephemeral range (32768–60999): a port
// found free there can still be taken by any process's outgoing connection
// before the node binds it, which failed a node's start now and then.
func freePorts(tb testing.TB, n int) []int {
	tb.Helper()
	var ports []int
	for tries := 0; len(ports) < n && tries < 1000; tries++ {
		p := 20000 + rand.IntN(2768)
		if !slices.Contains(ports, p) && free(p) && free(p+10000) {
			ports = append(ports, p)
		}
	}
	if len(ports) < n {
		tb.Fatal("no free ports for a redis cluster")
	}
	return ports
}

func free(p int) bool {
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
	if err != nil {
		return false
	}
	l.Close()
	return true
}
