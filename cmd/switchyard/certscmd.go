package main

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/switchyard/switchyard/certs"
)

// Mesh credential files in a --mesh-tls directory.
const (
	meshCAFile     = "ca.pem"
	meshCAKeyFile  = "ca.key"
	meshGossipFile = "gossip.key"
)

func meshNodeFiles(dir, node string) (cert, key string) {
	return filepath.Join(dir, node+".pem"), filepath.Join(dir, node+".key")
}

// runCerts implements `switchyard certs`:
//
//	switchyard certs init --dir DIR --nodes a,b,c   new mesh CA, node certificates and gossip key
//	switchyard certs node --dir DIR --name d        one more node certificate from DIR's CA
func runCerts(args []string, stdout, stderr io.Writer) error {
	usage := func() {
		fmt.Fprintln(stderr, `usage:
  switchyard certs init --dir DIR --nodes NAME[,NAME...] [--hosts H,...]
      create a mesh CA (ca.pem, ca.key), a certificate per node (NAME.pem, NAME.key)
      and a gossip encryption key (gossip.key) in DIR
  switchyard certs node --dir DIR --name NAME [--hosts H,...]
      issue one more node certificate from the CA in DIR

Start each node with --node NAME --mesh-tls DIR (only ca.pem, NAME.pem and NAME.key
are read; keep ca.key away from the nodes) and --mesh-key @DIR/gossip.key.`)
	}
	if len(args) == 0 {
		usage()
		return errors.New("certs: missing subcommand")
	}
	if args[0] != "init" && args[0] != "node" {
		usage()
		return fmt.Errorf("certs: unknown subcommand %q", args[0])
	}
	fs := flag.NewFlagSet("switchyard certs "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "`directory` for the mesh credentials")
	var nodes, name *string
	if args[0] == "init" {
		nodes = fs.String("nodes", "", "comma-separated node `names`")
	} else {
		name = fs.String("name", "", "node `name`")
	}
	hosts := fs.String("hosts", "", "extra comma-separated DNS names or IPs for the node certificates")
	validity := fs.Duration("validity", 365*24*time.Hour, "node certificate `validity`")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *dir == "" {
		return errors.New("certs: --dir is required")
	}
	extra := splitList(*hosts)
	if args[0] == "init" {
		return initMesh(stdout, *dir, splitList(*nodes), extra, *validity)
	}
	return addNode(stdout, *dir, *name, extra, *validity)
}

// initMesh creates a CA, node certificates and a gossip key in dir.
func initMesh(stdout io.Writer, dir string, names, hosts []string, validity time.Duration) error {
	if len(names) == 0 {
		return errors.New("certs init: --nodes is required")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	caCert := filepath.Join(dir, meshCAFile)
	if _, err := os.Stat(caCert); err == nil {
		return fmt.Errorf("certs init: %s exists; use `switchyard certs node` to add nodes", caCert)
	}
	ca, err := certs.NewCA("switchyard mesh CA", 0)
	if err != nil {
		return err
	}
	if err := ca.WriteFiles(caCert, filepath.Join(dir, meshCAKeyFile)); err != nil {
		return err
	}
	var key [32]byte
	if _, err := rand.Read(key[:]); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, meshGossipFile), []byte(base64.StdEncoding.EncodeToString(key[:])+"\n"), 0o600); err != nil {
		return err
	}
	for _, n := range names {
		if err := issueNode(ca, dir, n, hosts, validity); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "mesh credentials for %s in %s\n", strings.Join(names, ", "), dir)
	return nil
}

// addNode issues one more node certificate from dir's CA.
func addNode(stdout io.Writer, dir, name string, hosts []string, validity time.Duration) error {
	if name == "" {
		return errors.New("certs node: --name is required")
	}
	ca, err := certs.LoadCA(filepath.Join(dir, meshCAFile), filepath.Join(dir, meshCAKeyFile))
	if err != nil {
		return err
	}
	if err := issueNode(ca, dir, name, hosts, validity); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "certificate for %s in %s\n", name, dir)
	return nil
}

func issueNode(ca *certs.CA, dir, name string, hosts []string, validity time.Duration) error {
	if strings.ContainsAny(name, `/\ `) || name == "" || name == "ca" {
		return fmt.Errorf("certs: %q is not a usable node name", name)
	}
	cert, key, err := ca.Issue(name, hosts, validity)
	if err != nil {
		return err
	}
	cf, kf := meshNodeFiles(dir, name)
	if err := os.WriteFile(cf, cert, 0o644); err != nil {
		return err
	}
	return os.WriteFile(kf, key, 0o600)
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}
