package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// One line of the raw file that bench/run.sh writes per timed run:
//
//	image tool round status wall_s user_s sys_s maxrss_KiB entries tree
type sample struct {
	round          int
	ok             bool
	wall, cpu, rss float64 // seconds, seconds, MiB
	entries, tree  string
}

type row struct {
	tool  string
	label string
	ours  string // the tool of ours this row is compared with ("" for ours)
}

var rows = []row{
	{"ocifetch", "ocifetch unpack (cold)", ""},
	{"crane", "crane export \\| tar -x", "ocifetch"},
	{"ocifetch-noblobs", "ocifetch unpack --keep-blobs=false (cold)", ""},
	{"crane", "crane export \\| tar -x (against --keep-blobs=false)", "ocifetch-noblobs"},
	{"skopeo-umoci", "skopeo copy + umoci raw unpack", "ocifetch"},
	{"containerd", "containerd: ctr image pull, native snapshotter", "ocifetch"},
	{"download", "floor: download the blobs (curl to /dev/null)", "ocifetch"},
	{"pigz-tar", "floor: pigz -dc BLOB \\| tar -x, from local disk", "ocifetch"},
	{"ocifetch-warm", "ocifetch unpack (warm: blobs in the store)", ""},
	{"tar-x", "floor: tar -x of the uncompressed layers", "ocifetch-warm"},
	{"ocifetch-rebuild", "ocifetch rebuild --all --check", ""},
	{"decompress", "floor: pigz -dc BLOB > /dev/null", "ocifetch-rebuild"},
	{"ocifetch-gc", "ocifetch gc --unpacked (after the warm unpack, round 1)", ""},
}

func target(image, comp, tool, ours string) (string, float64) {
	switch tool {
	case "crane":
		if ours == "ocifetch-noblobs" {
			if image == "b" || comp == "none" {
				return "< 1.0", 0.99999 // issue 13
			}
			return "", 0
		}
		switch image {
		case "a", "c":
			return "≤ 0.6", 0.6
		case "b", "d":
			return "< 1.0", 0.99999
		}
		return "", 0 // images e and f came with issue 13
	case "skopeo-umoci":
		if comp == "zstd" {
			return "", 0 // umoci cannot read zstd; skopeo recompresses
		}
		return "≤ 0.4", 0.4
	case "pigz-tar":
		return "≤ 1.2", 1.2
	case "tar-x":
		return "≤ 1.1", 1.1
	case "decompress":
		return "≤ 1.0", 1.0
	}
	return "", 0
}

type imageFlags []string

func (f *imageFlags) String() string     { return strings.Join(*f, ",") }
func (f *imageFlags) Set(s string) error { *f = append(*f, s); return nil }

func reportCmd(args []string) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	raw := fs.String("raw", "", "raw measurements (TSV) written by bench/run.sh")
	rebuild := fs.Bool("rebuild", false, "the CLI has rebuild")
	disk := fs.String("disk", "", "disk usage after unpack (TSV) written by bench/run.sh")
	var images imageFlags
	fs.Var(&images, "image", "NAME=LAYOUT, in table order (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	data, err := readRaw(*raw)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()

	fmt.Fprintln(w, "| image | layers | compression | compressed MiB | uncompressed MiB |")
	fmt.Fprintln(w, "| --- | ---: | --- | ---: | ---: |")
	for _, im := range images {
		name, layout, _ := strings.Cut(im, "=")
		n, comp, c, u, err := layoutSizes(layout)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "| %s | %d | %s | %.1f | %.1f |\n", name, n, comp, c, u)
	}
	fmt.Fprintln(w)

	fmt.Fprintln(w, "| image | tool | wall s | CPU s (user+sys) | peak RSS MiB | ours ÷ this (wall) | target | met | entries · tree |")
	fmt.Fprintln(w, "| --- | --- | ---: | ---: | ---: | ---: | --- | --- | --- |")
	for _, im := range images {
		name, layout, _ := strings.Cut(im, "=")
		_, comp, _, _, _ := layoutSizes(layout)
		for _, r := range rows {
			ss := data[name][r.tool]
			if r.ours == "ocifetch-noblobs" && len(data[name][r.ours]) == 0 {
				continue // crane's row is there once already
			}
			label := r.label
			if comp == "zstd" {
				label = strings.ReplaceAll(label, "pigz -dc", "zstd -dc")
				if r.tool == "skopeo-umoci" {
					label = "skopeo copy, recompressing to gzip, + umoci raw unpack (umoci 0.4.7 cannot read zstd; not comparable)"
				}
			}
			if comp == "none" {
				label = strings.ReplaceAll(label, "pigz -dc", "cat")
			}
			if len(ss) == 0 {
				if r.tool == "ocifetch-rebuild" && !*rebuild && len(data[name]["ocifetch"]) > 0 {
					fmt.Fprintf(w, "| %s | %s | not available yet | | | | | | |\n", name, label)
				}
				continue
			}
			var walls, cpus, rsss []float64
			failed := 0
			maxRSS := 0.0
			for _, s := range ss {
				if !s.ok {
					failed++
					continue
				}
				walls, cpus, rsss = append(walls, s.wall), append(cpus, s.cpu), append(rsss, s.rss)
				maxRSS = max(maxRSS, s.rss)
			}
			wall, cpu, rss := "failed", "", ""
			if len(walls) > 0 {
				wall = fmt.Sprintf("%.2f", median(walls))
				cpu = fmt.Sprintf("%.2f", median(cpus))
				rss = fmt.Sprintf("%.0f", median(rsss))
				if failed > 0 {
					wall += fmt.Sprintf(" (%d of %d runs failed)", failed, len(ss))
				}
			}
			ratio, tgt, met := "", "", ""
			if r.ours != "" {
				// The median over rounds of ours ÷ this in the same round.
				var rs []float64
				for _, s := range ss {
					for _, o := range data[name][r.ours] {
						if o.round == s.round && o.ok && s.ok && s.wall > 0 {
							rs = append(rs, o.wall/s.wall)
						}
					}
				}
				if len(rs) > 0 {
					ratio = fmt.Sprintf("%.3f", median(rs))
					var limit float64
					if tgt, limit = target(name, comp, r.tool, r.ours); tgt != "" {
						met = yesNo(median(rs) <= limit)
					}
				}
			} else if r.tool != "ocifetch-rebuild" && r.tool != "ocifetch-gc" && len(walls) > 0 {
				tgt, met = "RSS ≤ 64 MiB", yesNo(maxRSS <= 64)
				if failed > 0 {
					met = "**no** (failed runs)"
				}
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
				name, label, wall, cpu, rss, ratio, tgt, met, firstTree(ss))
		}
	}
	if *disk != "" {
		fmt.Fprintln(w)
		if err := diskTable(w, *disk, images); err != nil {
			return err
		}
	}
	return nil
}

// diskTable prints the disk used after unpack, one line of the disk file
// per image and state (bench/run.sh writes it in round 1):
//
//	image how rootfs_B state_B shadow_B store_B
//
// The target (issue 13): without the layer blobs (--keep-blobs=false, or
// after gc --unpacked) the total is at most 1.2x the rootfs.
func diskTable(w *bufio.Writer, file string, images imageFlags) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	labels := map[string]string{
		"keep":     "unpack (blobs kept)",
		"gc":       "unpack, then gc --unpacked",
		"noblobs":  "unpack --keep-blobs=false",
		"rebuilt":  "then rebuild --compressed --all --store",
		"tar-only": "crane export \\| tar -x (no store, no state)",
	}
	fmt.Fprintln(w, "| image | after | rootfs MB | state MB (shadow) | store MB | total MB | total ÷ rootfs | target | met |")
	fmt.Fprintln(w, "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |")
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	for _, im := range images {
		name, _, _ := strings.Cut(im, "=")
		for _, line := range lines {
			fl := strings.Split(line, "\t")
			if len(fl) != 6 || fl[0] != name {
				continue
			}
			var v [4]float64
			for i := range v {
				if v[i], err = strconv.ParseFloat(fl[2+i], 64); err != nil {
					return fmt.Errorf("%s: %v", file, err)
				}
			}
			rootfs, state, shadow, store := v[0], v[1], v[2], v[3]
			total := rootfs + state + store
			tgt, met := "", ""
			if fl[1] == "gc" || fl[1] == "noblobs" {
				tgt, met = "≤ 1.2", yesNo(total <= 1.2*rootfs)
			}
			label := labels[fl[1]]
			if label == "" {
				label = fl[1]
			}
			fmt.Fprintf(w, "| %s | %s | %.1f | %.1f (%.1f) | %.1f | %.1f | %.2f | %s | %s |\n",
				name, label, rootfs/1e6, state/1e6, shadow/1e6, store/1e6, total/1e6, total/rootfs, tgt, met)
		}
	}
	return nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "**no**"
}

func firstTree(ss []sample) string {
	for _, s := range ss {
		if s.ok && s.entries != "-" && s.entries != "" {
			return s.entries + " · " + s.tree
		}
	}
	return ""
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func readRaw(file string) (map[string]map[string][]sample, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data := map[string]map[string][]sample{}
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		fl := strings.Split(sc.Text(), "\t")
		if len(fl) != 10 {
			return nil, fmt.Errorf("%s:%d: want 10 fields, got %d", file, line, len(fl))
		}
		var s sample
		var err error
		if s.round, err = strconv.Atoi(fl[2]); err != nil {
			return nil, fmt.Errorf("%s:%d: %v", file, line, err)
		}
		s.ok = fl[3] == "ok"
		if s.ok {
			var v [4]float64
			for i := range v {
				if v[i], err = strconv.ParseFloat(fl[4+i], 64); err != nil {
					return nil, fmt.Errorf("%s:%d: %v", file, line, err)
				}
			}
			s.wall, s.cpu, s.rss = v[0], v[1]+v[2], v[3]/1024
		}
		s.entries, s.tree = fl[8], fl[9]
		if data[fl[0]] == nil {
			data[fl[0]] = map[string][]sample{}
		}
		data[fl[0]][fl[1]] = append(data[fl[0]][fl[1]], s)
	}
	return data, sc.Err()
}

// layoutSizes sums layers.tsv of a layout built by "benchtool images".
func layoutSizes(layout string) (n int, comp string, compressedMiB, uncompressedMiB float64, err error) {
	data, err := os.ReadFile(filepath.Join(layout, "layers.tsv"))
	if err != nil {
		return 0, "", 0, 0, err
	}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		fl := strings.Split(line, "\t")
		if len(fl) < 5 {
			continue
		}
		n++
		comp = "none"
		if i := strings.LastIndex(fl[0], "+"); i >= 0 {
			comp = fl[0][i+1:]
		}
		c, _ := strconv.ParseFloat(fl[2], 64)
		u, _ := strconv.ParseFloat(fl[4], 64)
		compressedMiB += c / (1 << 20)
		uncompressedMiB += u / (1 << 20)
	}
	return n, comp, compressedMiB, uncompressedMiB, nil
}
