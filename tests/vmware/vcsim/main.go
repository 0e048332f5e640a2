// Command vcsim serves a simulated vCenter (govmomi's simulator library) over
// HTTPS on 127.0.0.1 for Tapir's VMware plugin tests.
//
// Debian packages govmomi's simulator library but not its vcsim command, so the
// tests build this small program instead. It prints one JSON line on stdout
// (URL, certificate fingerprint, inventory counts) once it accepts connections,
// and runs until it receives SIGINT or SIGTERM.
//
// Besides the vSphere API it answers GET /tapir/stats with the number of SOAP
// calls received per method, so tests can prove how many round trips a client
// made (for example that discovery used a single RetrieveProperties), and
// GET /tapir/served with the bytes served per datastore file (/folder/...), so
// tests can prove how much of a disk a backup read. Changed Block Tracking,
// which the simulator lacks, is added in cbt.go. The vAPI REST service (tags)
// is govmomi's own vapi simulator, served under /rest.
package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"encoding/xml"
	"flag"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vmware/govmomi/simulator"
	// Registers the vAPI REST endpoints (tagging) under /rest for a VPX model.
	_ "github.com/vmware/govmomi/vapi/simulator"
)

// methodCounter counts SOAP calls by method name.
type methodCounter struct {
	mu     sync.Mutex
	counts map[string]int
}

func (c *methodCounter) add(method string) {
	c.addN(method, 1)
}

func (c *methodCounter) addN(key string, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.counts[key] += n
}

func (c *methodCounter) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.counts))
	for k, v := range c.counts {
		out[k] = v
	}
	return out
}

// soapMethod returns the local name of the first element inside the SOAP Body.
func soapMethod(body []byte) string {
	dec := xml.NewDecoder(bytes.NewReader(body))
	inBody := false
	for {
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		start, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		if inBody {
			return start.Name.Local
		}
		inBody = start.Name.Local == "Body"
	}
}

// countingWriter counts the body bytes written through it.
type countingWriter struct {
	http.ResponseWriter
	n int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.n += n
	return n, err
}

// counting wraps the simulator's handler: SOAP posts are counted (and handed
// to the change tracker), datastore file bytes served are counted, the
// statistics paths are answered here, everything else passes through.
func counting(next http.Handler, counter, served *methodCounter, cbt *changeTracker) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/tapir/stats", "/tapir/served":
			stats := counter
			if r.URL.Path == "/tapir/served" {
				stats = served
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(stats.snapshot())
			return
		}
		if r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/folder/") {
			file := strings.TrimPrefix(r.URL.Path, "/folder/")
			cw := &countingWriter{ResponseWriter: w}
			next.ServeHTTP(cw, r)
			served.addN(file, cw.n)
			return
		}
		if r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/sdk") {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			if m := soapMethod(body); m != "" {
				counter.add(m)
				body = cbt.cbtFrontEnd(m, body, r)
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.ContentLength = int64(len(body))
		}
		next.ServeHTTP(w, r)
	})
}

// selfSigned makes a fresh P-256 certificate for 127.0.0.1, like the
// self-signed certificate a new vCenter presents.
func selfSigned() (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "127.0.0.1", Organization: []string{"tapir vcsim"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		// Self-signed: it is its own issuer, so a client can pin it as a CA.
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, &tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, der, nil
}

func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}

func main() {
	model := simulator.VPX()
	flag.IntVar(&model.Datacenter, "dc", 2, "datacenters")
	flag.IntVar(&model.Cluster, "cluster", 2, "clusters per datacenter")
	flag.IntVar(&model.ClusterHost, "cluster-host", 2, "hosts per cluster")
	flag.IntVar(&model.Host, "host", 1, "standalone hosts per datacenter")
	flag.IntVar(&model.Pool, "pool", 1, "child resource pools per cluster")
	flag.IntVar(&model.Machine, "vm", 2, "virtual machines per resource pool")
	flag.IntVar(&model.Datastore, "datastore", 1, "datastores")
	flag.IntVar(&model.Folder, "folder", 1, "datacenters placed inside a folder")
	user := flag.String("username", "tapir", "the only user name accepted")
	password := flag.String("password", "secret", "its password")
	certOut := flag.String("cert-out", "", "write the certificate (PEM) to this file")
	flag.Parse()

	if err := model.Create(); err != nil {
		log.Fatalf("model: %v", err)
	}
	defer model.Remove()

	cert, der, err := selfSigned()
	if err != nil {
		log.Fatalf("certificate: %v", err)
	}
	if *certOut != "" {
		block := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
		if err := os.WriteFile(*certOut, block, 0o644); err != nil {
			log.Fatalf("cert-out: %v", err)
		}
	}
	model.Service.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	model.Service.Listen = &url.URL{Host: "127.0.0.1:0", User: url.UserPassword(*user, *password)}

	counter := &methodCounter{counts: map[string]int{}}
	served := &methodCounter{counts: map[string]int{}}
	cbt := newChangeTracker()
	simulator.Map.AddHandler(cbt)
	model.Service.RegisterSDK(cbt.registry)
	model.Service.RegisterEndpoints = true
	server := model.Service.NewServer()
	// No client knows the URL yet (it is printed below), so swapping the
	// handler here cannot race with a request.
	server.Config.Handler = counting(server.Config.Handler, counter, served, cbt)

	count := model.Count()
	u := *server.URL
	u.User = nil
	info := map[string]interface{}{
		"url":         u.String(),
		"fingerprint": fingerprint(der),
		"username":    *user,
		"password":    *password,
		"count": map[string]int{
			"datacenter": count.Datacenter,
			"cluster":    count.Cluster,
			"host":       count.Host,
			"vm":         count.Machine,
			"pool":       count.Pool,
			"datastore":  count.Datastore,
			"folder":     count.Folder,
		},
	}
	line, _ := json.Marshal(info)
	fmt.Println(string(line))

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
	server.Close()
}
