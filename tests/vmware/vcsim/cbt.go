// Changed Block Tracking for the simulator, which has none of its own.
//
// govmomi 0.24's simulator accepts ReconfigVM_Task(changeTrackingEnabled) but
// answers QueryChangedDiskAreas with MethodNotFound and never sets a disk's
// backing.changeId. This file adds both, computed from the real bytes of each
// disk's flat extent (the files the tests write into the datastore folder):
//
//   - When a snapshot of a VM with tracking on is taken, every flat disk of the
//     snapshot gets a change id "<epoch>/<sequence>", and the fixture keeps a
//     copy of the disk's bytes at that moment under that id.
//   - QueryChangedDiskAreas(snapshot, deviceKey, startOffset, changeId) compares
//     the snapshot's copy with the copy kept for changeId, in blocks of
//     cbtBlock bytes; changeId "*" lists the blocks holding any non-zero byte
//     (a thin disk's allocated areas). One answer covers at most cbtWindow
//     bytes from startOffset, so clients must continue from startOffset+length
//     as they must with vSphere.
//   - Turning tracking off (ReconfigVM_Task) forgets the VM's change ids: a
//     later query with one of them gets an InvalidArgument fault on "changeId",
//     as vSphere answers after a CBT reset.
//
// The method cannot be added by wrapping the VM in the simulator's global
// registry (its snapshot code type-asserts *simulator.VirtualMachine), and a
// logged-in call is always dispatched to the object of the global registry
// under its _this. So the wrapper has a reference of its own ("tapir-cbt-" and
// the VM's), lives in a registry of its own served at cbtPath, and the HTTP
// front end routes QueryChangedDiskAreas posts there with _this rewritten to
// it. The simulator's ServeSDK still decodes the call, checks the session
// cookie and encodes the answer or fault.
package main

import (
	"crypto/rand"
	"fmt"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

const (
	cbtPath   = "/tapir/cbt-sdk"
	cbtBlock  = 64 * 1024
	cbtWindow = 8 * 1024 * 1024
)

var extentLine = regexp.MustCompile(`(?m)^\s*RW\s+\d+\s+\w+\s+"([^"]+)"`)

// diskHistory is what the fixture remembers of one disk since tracking was
// last turned on: the epoch of its change ids and the bytes each id names.
type diskHistory struct {
	epoch    string
	seq      int
	versions map[string][]byte
}

type diskID struct {
	vm  types.ManagedObjectReference
	key int32
}

// changeTracker keeps every tracked disk's history; it is also a
// simulator.RegisterObject so it sees each snapshot the moment it is created.
type changeTracker struct {
	mu       sync.Mutex
	disks    map[diskID]*diskHistory
	registry *simulator.Registry
}

func newChangeTracker() *changeTracker {
	reg := simulator.NewRegistry()
	reg.Path = cbtPath
	return &changeTracker{disks: map[diskID]*diskHistory{}, registry: reg}
}

func (c *changeTracker) Reference() types.ManagedObjectReference {
	return types.ManagedObjectReference{Type: "TapirChangeTracker", Value: "tapir-cbt"}
}

func (c *changeTracker) UpdateObject(mo.Reference, []types.PropertyChange) {}
func (c *changeTracker) RemoveObject(types.ManagedObjectReference)         {}

// PutObject gives a new snapshot's disks their change ids. It runs inside the
// simulator's CreateSnapshot task, which already holds the VM's lock.
func (c *changeTracker) PutObject(item mo.Reference) {
	snap, ok := item.(*simulator.VirtualMachineSnapshot)
	if !ok {
		return
	}
	vm, ok := simulator.Map.Get(snap.Vm).(*simulator.VirtualMachine)
	if !ok || vm.Config == nil || vm.Config.ChangeTrackingEnabled == nil ||
		!*vm.Config.ChangeTrackingEnabled {
		return
	}
	// The simulator's snapshot shares the VM's device objects: copy before changing.
	devices := make([]types.BaseVirtualDevice, len(snap.Config.Hardware.Device))
	for i, dev := range snap.Config.Hardware.Device {
		devices[i] = dev
		disk, ok := dev.(*types.VirtualDisk)
		if !ok {
			continue
		}
		backing, ok := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
		if !ok {
			continue
		}
		diskCopy, backingCopy := *disk, *backing
		backingCopy.ChangeId = c.record(vm, disk, backing)
		diskCopy.Backing = &backingCopy
		devices[i] = &diskCopy
	}
	snap.Config.Hardware.Device = devices
}

// record keeps the disk's current bytes under a new change id and returns it.
func (c *changeTracker) record(
	vm *simulator.VirtualMachine, disk *types.VirtualDisk, backing *types.VirtualDiskFlatVer2BackingInfo,
) string {
	data, err := readDisk(vm, backing.FileName, diskSize(disk))
	c.mu.Lock()
	defer c.mu.Unlock()
	id := diskID{vm.Self, disk.Key}
	h := c.disks[id]
	if h == nil {
		h = &diskHistory{epoch: newEpoch(), versions: map[string][]byte{}}
		c.disks[id] = h
	}
	h.seq++
	changeID := fmt.Sprintf("%s/%d", h.epoch, h.seq)
	if err == nil {
		h.versions[changeID] = data
	} else {
		log.Printf("cbt: %s: %v", backing.FileName, err)
	}
	return changeID
}

// reset forgets a VM's change ids (tracking turned off).
func (c *changeTracker) reset(vm types.ManagedObjectReference) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id := range c.disks {
		if id.vm == vm {
			delete(c.disks, id)
		}
	}
}

// route makes sure the VM has its wrapper in the tracker's registry before a
// QueryChangedDiskAreas post is handed to the simulator at cbtPath; it
// returns the wrapper's reference, or false for an unknown VM (whose call the
// simulator then answers with its own fault).
func (c *changeTracker) route(this types.ManagedObjectReference) (types.ManagedObjectReference, bool) {
	ref := types.ManagedObjectReference{Type: this.Type, Value: "tapir-cbt-" + this.Value}
	if c.registry.Get(ref) != nil {
		return ref, true
	}
	vm, ok := simulator.Map.Get(this).(*simulator.VirtualMachine)
	if !ok {
		return ref, false
	}
	c.registry.Put(&trackedVM{VirtualMachine: vm, tracker: c, ref: ref})
	return ref, true
}

// trackedVM adds QueryChangedDiskAreas to the simulator's VirtualMachine.
type trackedVM struct {
	*simulator.VirtualMachine
	tracker *changeTracker
	ref     types.ManagedObjectReference
}

// Reference is the wrapper's own, so the simulator dispatches calls on it to it.
func (vm *trackedVM) Reference() types.ManagedObjectReference {
	return vm.ref
}

// QueryChangedDiskAreas answers from the bytes recorded at each change id.
func (vm *trackedVM) QueryChangedDiskAreas(
	ctx *simulator.Context, req *types.QueryChangedDiskAreas,
) soap.HasFault {
	body := &methods.QueryChangedDiskAreasBody{}
	info, fault := vm.tracker.query(vm.VirtualMachine, req)
	if fault != nil {
		body.Fault_ = simulator.Fault("", fault)
		return body
	}
	body.Res = &types.QueryChangedDiskAreasResponse{Returnval: *info}
	return body
}

func (c *changeTracker) query(
	vm *simulator.VirtualMachine, req *types.QueryChangedDiskAreas,
) (*types.DiskChangeInfo, types.BaseMethodFault) {
	var devices []types.BaseVirtualDevice
	var changeEnabled bool
	simulator.Map.WithLock(vm, func() {
		changeEnabled = vm.Config.ChangeTrackingEnabled != nil && *vm.Config.ChangeTrackingEnabled
		devices = vm.Config.Hardware.Device
	})
	if !changeEnabled {
		return nil, &types.NotSupported{}
	}
	if req.Snapshot != nil {
		snap, ok := simulator.Map.Get(*req.Snapshot).(*simulator.VirtualMachineSnapshot)
		if !ok || snap.Vm != vm.Self {
			return nil, &types.InvalidArgument{InvalidProperty: "snapshot"}
		}
		devices = snap.Config.Hardware.Device
	}
	var disk *types.VirtualDisk
	for _, dev := range devices {
		if d, ok := dev.(*types.VirtualDisk); ok && d.Key == req.DeviceKey {
			disk = d
		}
	}
	if disk == nil {
		return nil, &types.InvalidArgument{InvalidProperty: "deviceKey"}
	}
	backing, ok := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
	if !ok {
		return nil, &types.InvalidArgument{InvalidProperty: "deviceKey"}
	}
	size := diskSize(disk)
	if req.StartOffset < 0 || req.StartOffset > size {
		return nil, &types.InvalidArgument{InvalidProperty: "startOffset"}
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	var now []byte
	if req.Snapshot != nil {
		now = c.version(vm.Self, disk.Key, backing.ChangeId)
		if now == nil {
			return nil, &types.FileFault{File: backing.FileName}
		}
	} else {
		data, err := readDisk(vm, backing.FileName, size)
		if err != nil {
			return nil, &types.FileFault{File: backing.FileName}
		}
		now = data
	}
	var before []byte
	if req.ChangeId != "*" {
		before = c.version(vm.Self, disk.Key, req.ChangeId)
		if before == nil {
			return nil, &types.InvalidArgument{InvalidProperty: "changeId"}
		}
	}

	end := req.StartOffset + cbtWindow
	if end > size {
		end = size
	}
	info := &types.DiskChangeInfo{StartOffset: req.StartOffset, Length: end - req.StartOffset}
	for block := req.StartOffset - req.StartOffset%cbtBlock; block < end; block += cbtBlock {
		stop := block + cbtBlock
		if stop > size {
			stop = size
		}
		if !blockChanged(now, before, block, stop) {
			continue
		}
		areas := info.ChangedArea
		if n := len(areas); n > 0 && areas[n-1].Start+areas[n-1].Length == block {
			areas[n-1].Length += stop - block
			continue
		}
		info.ChangedArea = append(areas, types.DiskChangeExtent{Start: block, Length: stop - block})
	}
	return info, nil
}

// version is the bytes a change id names, or nil when the id is unknown,
// malformed or from before the last reset.
func (c *changeTracker) version(vm types.ManagedObjectReference, key int32, changeID string) []byte {
	h := c.disks[diskID{vm, key}]
	if h == nil || !strings.HasPrefix(changeID, h.epoch+"/") {
		return nil
	}
	return h.versions[changeID]
}

// blockChanged: without a previous version, whether the block holds data.
func blockChanged(now, before []byte, start, stop int64) bool {
	for i := start; i < stop; i++ {
		if before == nil && now[i] != 0 || before != nil && now[i] != before[i] {
			return true
		}
	}
	return false
}

func diskSize(disk *types.VirtualDisk) int64 {
	if disk.CapacityInBytes != 0 {
		return disk.CapacityInBytes
	}
	return disk.CapacityInKB * 1024
}

// readDisk reads a disk's flat extent from the datastore's local folder, as
// many bytes as the disk has (zeros past the end of a short file).
func readDisk(vm *simulator.VirtualMachine, fileName string, size int64) ([]byte, error) {
	dsName, rel, ok := strings.Cut(strings.TrimPrefix(fileName, "["), "] ")
	if !ok {
		return nil, fmt.Errorf("not a datastore path: %q", fileName)
	}
	var folder string
	for _, ref := range vm.Datastore {
		if ds, ok := simulator.Map.Get(ref).(*simulator.Datastore); ok && ds.Name == dsName {
			folder = ds.Info.GetDatastoreInfo().Url
		}
	}
	if folder == "" {
		return nil, fmt.Errorf("datastore %s not found", dsName)
	}
	descriptor := filepath.Join(folder, rel)
	flat := strings.TrimSuffix(descriptor, ".vmdk") + "-flat.vmdk"
	if text, err := os.ReadFile(descriptor); err == nil {
		if m := extentLine.FindSubmatch(text); m != nil {
			flat = filepath.Join(filepath.Dir(descriptor), filepath.Base(string(m[1])))
		}
	}
	data, err := os.ReadFile(flat)
	if err != nil {
		return nil, err
	}
	out := make([]byte, size)
	copy(out, data)
	return out, nil
}

func newEpoch() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	parts := make([]string, len(b))
	for i, x := range b {
		parts[i] = fmt.Sprintf("%02x", x)
	}
	return strings.Join(parts, " ")
}

var thisElement = regexp.MustCompile(`(<_this\b[^>]*>)[^<]*(</_this>)`)

// cbtFrontEnd routes QueryChangedDiskAreas to the tracker's registry and
// notices ReconfigVM_Task turning tracking off; it returns the request body
// to hand on to the simulator.
func (c *changeTracker) cbtFrontEnd(method string, body []byte, r *http.Request) []byte {
	switch method {
	case "QueryChangedDiskAreas":
		if m, err := simulator.UnmarshalBody(types.TypeFunc(), body); err == nil {
			if ref, ok := c.route(m.This); ok {
				r.URL.Path = cbtPath
				body = thisElement.ReplaceAll(body, []byte("${1}"+ref.Value+"${2}"))
			}
		}
	case "ReconfigVM_Task":
		m, err := simulator.UnmarshalBody(types.TypeFunc(), body)
		if err != nil {
			return body
		}
		if req, ok := m.Body.(*types.ReconfigVM_Task); ok {
			if on := req.Spec.ChangeTrackingEnabled; on != nil && !*on {
				c.reset(m.This)
			}
		}
	}
	return body
}
