// The go-control-plane peer of `npm run bench -- ads` (bench/ads.bench.ts): an ADS
// server (SotW, StreamAggregatedResources) that serves the resources meshkey translated
// for mesh generations A and B, exported by bench/xds/export-resources.ts.
//
// Two caches, as go-control-plane offers them:
//   - snapshot: one SnapshotCache (ads=false, IDHash, as its internal/example does);
//     each node's Snapshot is set when its first request arrives, with one Resources value
//     (version + name map) per type and view, shared by every node of the view, and a
//     version per type (a content hash), so a type that did not change is not resent;
//   - linear: a MuxCache over one LinearCache per type and view (per node for listeners,
//     which carry the pod IP), classified by type URL and node id; a switch updates only
//     the resources whose bytes changed.
//
// Commands on stdin, one per line, answered on stdout:
//   gc      runtime.GC + debug.FreeOSMemory        → "ok gc"
//   switch  serve generation B (every node, now)    → "ok switch <ms>"
// First line on stdout: "listening <port>" once generation A is loaded.
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/log"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"
)

// Same order as TYPES in bench/xds/ads-mesh.ts.
var typeURLs = [4]string{resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType, resourcev3.RouteType}
var responseTypes = [4]types.ResponseType{types.Cluster, types.Endpoint, types.Listener, types.Route}

type group struct {
	version   string
	resources []types.Resource
	byName    map[string]types.Resource
	shared    cachev3.Resources // built once, shared by every node's Snapshot
}

type generation struct {
	groups []*group
	nodes  map[string][4]int // node id → group per type
}

// Messages already decoded, by type and bytes: generation B reuses A's for unchanged resources.
var decoded [4]map[string]types.Resource

func newMessage(t int) proto.Message {
	switch t {
	case 0:
		return &clusterv3.Cluster{}
	case 1:
		return &endpointv3.ClusterLoadAssignment{}
	case 2:
		return &listenerv3.Listener{}
	default:
		return &routev3.RouteConfiguration{}
	}
}

func load(path string) (*generation, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(data) < 4 || string(data[:4]) != "MKX1" {
		return nil, fmt.Errorf("%s: not an export file", path)
	}
	off := 4
	u32 := func() int {
		v := binary.LittleEndian.Uint32(data[off:])
		off += 4
		return int(v)
	}
	u8 := func() int {
		v := data[off]
		off++
		return int(v)
	}
	str := func() string {
		n := u32()
		s := string(data[off : off+n])
		off += n
		return s
	}
	blobs := make([]types.Resource, u32())
	for i := range blobs {
		t := u8()
		n := u32()
		raw := data[off : off+n]
		off += n
		if m, ok := decoded[t][string(raw)]; ok {
			blobs[i] = m
			continue
		}
		m := newMessage(t)
		if err := proto.Unmarshal(raw, m); err != nil {
			return nil, fmt.Errorf("%s: blob %d: %w", path, i, err)
		}
		decoded[t][string(raw)] = m
		blobs[i] = m
	}
	g := &generation{groups: make([]*group, u32()), nodes: map[string][4]int{}}
	for i := range g.groups {
		u8() // type (implied by the nodes that use it)
		gr := &group{version: str(), byName: map[string]types.Resource{}}
		n := u32()
		for j := 0; j < n; j++ {
			r := blobs[u32()]
			gr.resources = append(gr.resources, r)
			gr.byName[cachev3.GetResourceName(r)] = r
		}
		gr.shared = cachev3.NewResources(gr.version, gr.resources)
		g.groups[i] = gr
	}
	nodes := u32()
	for i := 0; i < nodes; i++ {
		id := str()
		var gs [4]int
		for t := range gs {
			gs[t] = u32()
		}
		g.nodes[id] = gs
	}
	return g, nil
}

func (g *generation) snapshot(node string) (*cachev3.Snapshot, bool) {
	gs, ok := g.nodes[node]
	if !ok {
		return nil, false
	}
	s := &cachev3.Snapshot{}
	for t, gi := range gs {
		s.Resources[responseTypes[t]] = g.groups[gi].shared
	}
	return s, true
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	mode := flag.String("cache", "snapshot", "snapshot | linear")
	fileA := flag.String("a", "", "export of generation A")
	fileB := flag.String("b", "", "export of generation B")
	flag.Parse()
	for t := range decoded {
		decoded[t] = map[string]types.Resource{}
	}
	genA, err := load(*fileA)
	if err != nil {
		fail(err)
	}
	genB, err := load(*fileB)
	if err != nil {
		fail(err)
	}
	decoded = [4]map[string]types.Resource{} // only the generations keep their messages

	quiet := log.LoggerFuncs{}
	ctx := context.Background()
	var xds cachev3.Cache
	var doSwitch func()
	var callbacks serverv3.CallbackFuncs

	switch *mode {
	case "snapshot":
		snapshots := cachev3.NewSnapshotCache(false, cachev3.IDHash{}, quiet)
		var mu sync.Mutex
		current := genA
		seen := map[string]bool{}
		callbacks.StreamRequestFunc = func(_ int64, req *discoverygrpc.DiscoveryRequest) error {
			id := req.GetNode().GetId()
			mu.Lock()
			defer mu.Unlock()
			if seen[id] {
				return nil
			}
			snap, ok := current.snapshot(id)
			if !ok {
				return fmt.Errorf("unknown node %q", id)
			}
			seen[id] = true
			return snapshots.SetSnapshot(ctx, id, snap)
		}
		doSwitch = func() {
			mu.Lock()
			defer mu.Unlock()
			current = genB
			for id := range seen {
				snap, _ := genB.snapshot(id)
				if err := snapshots.SetSnapshot(ctx, id, snap); err != nil {
					fail(err)
				}
			}
		}
		xds = snapshots
	case "linear":
		// One LinearCache per type and view; a view is the pair (group in A, group in B),
		// so that it stays the same across the switch.
		type view struct{ a, b int }
		caches := map[string]cachev3.Cache{}
		linear := map[string]*cachev3.LinearCache{}
		views := map[string]view{}
		nodeKeys := map[string][4]string{}
		for id, ga := range genA.nodes {
			gb, ok := genB.nodes[id]
			if !ok {
				fail(fmt.Errorf("node %q is not in generation B", id))
			}
			var keys [4]string
			for t := range ga {
				key := fmt.Sprintf("%d:%d:%d", t, ga[t], gb[t])
				keys[t] = key
				if _, ok := linear[key]; !ok {
					lc := cachev3.NewLinearCache(typeURLs[t], cachev3.WithInitialResources(genA.groups[ga[t]].byName), cachev3.WithLogger(quiet))
					linear[key] = lc
					caches[key] = lc
					views[key] = view{ga[t], gb[t]}
				}
			}
			nodeKeys[id] = keys
		}
		typeIndex := map[string]int{}
		for t, u := range typeURLs {
			typeIndex[u] = t
		}
		xds = &cachev3.MuxCache{
			Classify: func(req *cachev3.Request) string {
				t, ok := typeIndex[req.GetTypeUrl()]
				if !ok {
					return ""
				}
				return nodeKeys[req.GetNode().GetId()][t]
			},
			ClassifyDelta: func(*cachev3.DeltaRequest) string { return "" },
			Caches:        caches,
		}
		doSwitch = func() {
			for key, lc := range linear {
				v := views[key]
				a, b := genA.groups[v.a].byName, genB.groups[v.b].byName
				update := map[string]types.Resource{}
				var remove []string
				for name, r := range b {
					if a[name] != r { // same bytes decode to the same message (see load)
						update[name] = r
					}
				}
				for name := range a {
					if _, ok := b[name]; !ok {
						remove = append(remove, name)
					}
				}
				if len(update) > 0 || len(remove) > 0 {
					if err := lc.UpdateResources(update, remove); err != nil {
						fail(err)
					}
				}
			}
		}
	default:
		fail(fmt.Errorf("-cache must be snapshot or linear, got %q", *mode))
	}

	srv := serverv3.NewServer(ctx, xds, callbacks)
	// The gRPC options of go-control-plane's internal/example.
	grpcServer := grpc.NewServer(
		grpc.MaxConcurrentStreams(1000000),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 5 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 30 * time.Second, PermitWithoutStream: true}),
	)
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(grpcServer, srv)
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		fail(err)
	}
	go func() {
		if err := grpcServer.Serve(lis); err != nil {
			fail(err)
		}
	}()
	runtime.GC()
	fmt.Printf("listening %d\n", lis.Addr().(*net.TCPAddr).Port)

	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch in.Text() {
		case "gc":
			runtime.GC()
			debug.FreeOSMemory()
			fmt.Println("ok gc")
		case "switch":
			t0 := time.Now()
			doSwitch()
			fmt.Printf("ok switch %d\n", time.Since(t0).Milliseconds())
		default:
			fmt.Printf("error unknown command %q\n", in.Text())
		}
	}
	// stdin closed: the harness is done with us.
	grpcServer.Stop()
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "go-control-plane peer:", err)
	os.Exit(1)
}
