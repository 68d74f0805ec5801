package recipe

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// goldenInput is what the golden digests are of: real source text (the
// vendored Go 1.26 compress/flate and klauspost v1.15.12 zstd files,
// frozen by definition), then 256 KiB of the synthetic corpus. The text
// tells apart releases that the corpus alone does not: klauspost v1.19.2
// and v1.20.4 write different bytes from it at every level but 0, zstd
// included.
func goldenInput(t *testing.T) []byte {
	t.Helper()
	var b []byte
	for _, pattern := range []string{"third_party/go1.26/flate/*.go", "third_party/klauspost1.15.12/zstd/*.go"} {
		files, err := filepath.Glob(pattern)
		if err != nil || len(files) < 5 {
			t.Fatalf("%s: %d files, %v", pattern, len(files), err)
		}
		for _, f := range files { // Glob sorts them
			c, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			// The files were vendored under recipe/internal/ and moved to
			// recipe/third_party/ (so that tools counting duplicated code
			// pass them over); the input stays the text as vendored.
			b = append(b, bytes.ReplaceAll(c, []byte("internal/recipe/third_party/"), []byte("internal/recipe/internal/"))...)
		}
	}
	b = append(b, corpus(256<<10)...)
	if len(b) != 666434 {
		t.Fatalf("the golden input is %d bytes, not 666434: a vendored file changed", len(b))
	}
	return b
}

// goldenRecipes are the recipes TestGoldenDigests holds: every pinned
// implementation at every level, pgzip framings, zstd levels.
func goldenRecipes() []Recipe {
	var rs []Recipe
	for _, impl := range Implementations() {
		for _, l := range impl.Levels {
			r := Recipe{Format: impl.Format, Encoder: impl.Encoder, Version: impl.Version, Level: l}
			if impl.Format == FormatZstd {
				r.Zstd = &ZstdParams{Checksum: true}
				rs = append(rs, r)
				continue
			}
			r.Gzip = &GzipHeader{OS: 255}
			rs = append(rs, r)
			if impl.Encoder == EncoderKlauspostFlate && (l == 1 || l == 5) {
				for _, bs := range pgzipBlockSizes {
					r.BlockSize = bs
					rs = append(rs, r)
				}
			}
		}
	}
	return rs
}

// goldenDigests are the sha256 of goldenInput compressed by each
// golden recipe, recorded when each implementation was pinned. A change
// means a recipe no longer makes the blobs it made: for the vendored
// copies, an edit; for klauspost/compress, a go.mod bump that changed its
// output, which must vendor the old release first (third_party/README.md)
// so that recipes recorded with it keep working.
var goldenDigests = map[string]string{
	"gzip go-flate go1.26.8 level 6 (mtime 0, os 255)":                                "5dd5afceb2533dd78d695f194b4468b12a5d9325eed512b0a2b9b4d4f74404bc",
	"gzip go-flate go1.26.8 level 1 (mtime 0, os 255)":                                "21a71a5dd422fba86ffd2164bbfb34cb59358d66f64eebd765b780c14238bf43",
	"gzip go-flate go1.26.8 level 9 (mtime 0, os 255)":                                "342cbec48958200be635bc16b0725a823d19088432991361490ce42712475081",
	"gzip go-flate go1.26.8 level 5 (mtime 0, os 255)":                                "5ebbc26492357a4a1539989ca55e3fda9d17b343da379842a2e746a24d18547b",
	"gzip go-flate go1.26.8 level 4 (mtime 0, os 255)":                                "7328abb57aea9b290595b9988d4e75797f81a419adffbefc84a405af6a27928a",
	"gzip go-flate go1.26.8 level 7 (mtime 0, os 255)":                                "c93a27a242a7f4eae248b88020987900917971a5fe402875d090ce8ebf8fac93",
	"gzip go-flate go1.26.8 level 3 (mtime 0, os 255)":                                "43cb3f8b4126ebecf392d79bae6de01fb57cbe304db25f80b3228413281f5d71",
	"gzip go-flate go1.26.8 level 2 (mtime 0, os 255)":                                "b76f214f02a9d8e151398c30052f13f6ae4ca494f6e38559719706631a846360",
	"gzip go-flate go1.26.8 level 8 (mtime 0, os 255)":                                "34dc12c3a4d1745ece94385f32da3e833872f28c40a512fdb89217b091827d80",
	"gzip go-flate go1.26.8 level 0 (mtime 0, os 255)":                                "449d999cad35c81da128c3688d65364575a63c27dac3b0dc6dac9ade99af9e09",
	"gzip go-flate go1.26.8 level -2 (mtime 0, os 255)":                               "088625249bf25cfc9a076f3718a430695949a967b7e0418f1926ed7445c6f189",
	"gzip go-flate go1.27.3 level 6 (mtime 0, os 255)":                                "6131003ab690ce74cc20b2f09b691a6578b818c6befe94643e29a4c7175371ec",
	"gzip go-flate go1.27.3 level 1 (mtime 0, os 255)":                                "daa1107186def778b12abf983e940573b17816b39f1d4d0e24858e75dd6b4552",
	"gzip go-flate go1.27.3 level 9 (mtime 0, os 255)":                                "d93e141ee7cd2192d3b7b6c3b3f4f7e7fbd63689d5b604b878e04580564ea40e",
	"gzip go-flate go1.27.3 level 5 (mtime 0, os 255)":                                "0cd434adafb87c85509e8b05e746e673c4ac1e30162117db1964c770a0399f8f",
	"gzip go-flate go1.27.3 level 4 (mtime 0, os 255)":                                "d55ee5eda0328683f99ee6c7021527aa1e7cb906b14180e9426e93cf9d819696",
	"gzip go-flate go1.27.3 level 7 (mtime 0, os 255)":                                "09014d5d1c83c920929e423ed8406ac2bb010b24035d5cb8dd603f5fe22b09b2",
	"gzip go-flate go1.27.3 level 3 (mtime 0, os 255)":                                "1b59f1e631ee2e9e3daddbaed56900d8eb77de8a7d9b539b172e078ab0d51cc3",
	"gzip go-flate go1.27.3 level 2 (mtime 0, os 255)":                                "a7726e3ae1805f0ab1779e20d59d705d3521a2bebe029742ea86a71c658ba217",
	"gzip go-flate go1.27.3 level 8 (mtime 0, os 255)":                                "9ac371cb9984d13f3296bb4841bc780204277412a7e745faea5f05f6585e83dd",
	"gzip go-flate go1.27.3 level 0 (mtime 0, os 255)":                                "bbe1a0c90d51f1171ec868a84c8400a7f5da2afe4529d3d340e0f1cb0558fb80",
	"gzip go-flate go1.27.3 level -2 (mtime 0, os 255)":                               "beb986954b40628db9eea0a0739e9d48b1d85ab4f367fd0c3a77e02f9d09850f",
	"gzip klauspost-flate v1.15.12 level 5 (mtime 0, os 255)":                         "0cd434adafb87c85509e8b05e746e673c4ac1e30162117db1964c770a0399f8f",
	"gzip klauspost-flate v1.15.12 level 5 pgzip blocks of 1048576 (mtime 0, os 255)": "27ec643bb7f0618afbf29700e4b3fa7e1ed0c339a17b018974e4707fa9b8b94f",
	"gzip klauspost-flate v1.15.12 level 5 pgzip blocks of 262144 (mtime 0, os 255)":  "a6180e186ab9c183320e794aeb70cde6090bb9312b3a06f1cf352734ef3ecda7",
	"gzip klauspost-flate v1.15.12 level 1 (mtime 0, os 255)":                         "daa1107186def778b12abf983e940573b17816b39f1d4d0e24858e75dd6b4552",
	"gzip klauspost-flate v1.15.12 level 1 pgzip blocks of 1048576 (mtime 0, os 255)": "5a9e6dbb2fa649b2f31f6edee4447b5188758b82bc7681a1955dc4536ab2fcec",
	"gzip klauspost-flate v1.15.12 level 1 pgzip blocks of 262144 (mtime 0, os 255)":  "66f8a1173bc90a09feec23864528164361c9d46e858623c73929bfb705fb4e47",
	"gzip klauspost-flate v1.15.12 level 9 (mtime 0, os 255)":                         "fb7a887636c53fb88503b3acbb792e21af3d3ee75d9328ede8f4560ed7c932e9",
	"gzip klauspost-flate v1.15.12 level 6 (mtime 0, os 255)":                         "6131003ab690ce74cc20b2f09b691a6578b818c6befe94643e29a4c7175371ec",
	"gzip klauspost-flate v1.15.12 level 4 (mtime 0, os 255)":                         "6d7520e7960e8ff8706d375fc6e7f32f395237c76446ec239f39e2c68222f778",
	"gzip klauspost-flate v1.15.12 level 7 (mtime 0, os 255)":                         "60f7da90cc1074a2bb1f1807571d7194016d415ea78ba2d97f98707beaaacdd1",
	"gzip klauspost-flate v1.15.12 level 3 (mtime 0, os 255)":                         "1b59f1e631ee2e9e3daddbaed56900d8eb77de8a7d9b539b172e078ab0d51cc3",
	"gzip klauspost-flate v1.15.12 level 2 (mtime 0, os 255)":                         "a7726e3ae1805f0ab1779e20d59d705d3521a2bebe029742ea86a71c658ba217",
	"gzip klauspost-flate v1.15.12 level 8 (mtime 0, os 255)":                         "2d8ad5ca0cf87555e9f882608feab49a8dcece7f8d16714e53603fa25966feca",
	"gzip klauspost-flate v1.15.12 level 0 (mtime 0, os 255)":                         "bbe1a0c90d51f1171ec868a84c8400a7f5da2afe4529d3d340e0f1cb0558fb80",
	"gzip klauspost-flate v1.15.12 level -2 (mtime 0, os 255)":                        "beb986954b40628db9eea0a0739e9d48b1d85ab4f367fd0c3a77e02f9d09850f",
	"gzip klauspost-flate v1.20.4 level 5 (mtime 0, os 255)":                          "e97aabf8eb1984209c3607712dd882907b1d316d3f08f38878e139c712abe922",
	"gzip klauspost-flate v1.20.4 level 5 pgzip blocks of 1048576 (mtime 0, os 255)":  "3489ed91e683a555df0cd94dff23eca1804147ae410d7c9096a3d42d38e2926a",
	"gzip klauspost-flate v1.20.4 level 5 pgzip blocks of 262144 (mtime 0, os 255)":   "f4b7d1f11cad339f5aebbb1268804848fd62a4ad742a8822864eced4264623f8",
	"gzip klauspost-flate v1.20.4 level 1 (mtime 0, os 255)":                          "99ac974edb6fc0604df406d1a39f7b081dffa9d2bd48461388a95ddc30757cf5",
	"gzip klauspost-flate v1.20.4 level 1 pgzip blocks of 1048576 (mtime 0, os 255)":  "df9be6ff011ae936c990791a7f47dfa19533932252e7350d157fee510697c067",
	"gzip klauspost-flate v1.20.4 level 1 pgzip blocks of 262144 (mtime 0, os 255)":   "96306c5b678d482a1c4bc59214cab1af6fcf1910dadde6d5c04edf5912764567",
	"gzip klauspost-flate v1.20.4 level 9 (mtime 0, os 255)":                          "94e8d0f26e3ac48e568cc0647b46a3c7abc6d11dcead225b241f8013ca1a5526",
	"gzip klauspost-flate v1.20.4 level 6 (mtime 0, os 255)":                          "2af60460108bc6e3529076a88adfbaefa3fef03879764b1dfa19079b5b071b92",
	"gzip klauspost-flate v1.20.4 level 4 (mtime 0, os 255)":                          "253a923563a5675c1b33a269e5d86e0cb375b25fe9c3d1361947cd0542c4e4e8",
	"gzip klauspost-flate v1.20.4 level 7 (mtime 0, os 255)":                          "6b5e06f19186f71a1f3e2542d2e51c5895d8a00fffc302d2e4bff101d6b1387f",
	"gzip klauspost-flate v1.20.4 level 3 (mtime 0, os 255)":                          "13ea4fe28391d53b0c0cfcbff39b26ea71df33608732b0ecac32c2bf44e543a3",
	"gzip klauspost-flate v1.20.4 level 2 (mtime 0, os 255)":                          "1e4ab04a38127628ecedceae4cbdee9b9ba780f0b3561bdb6f8b4f2f2fde27ae",
	"gzip klauspost-flate v1.20.4 level 8 (mtime 0, os 255)":                          "e559964ab68271b182386f8bc47d71f836e45f391fe15ddac495893cc73c0c64",
	"gzip klauspost-flate v1.20.4 level 0 (mtime 0, os 255)":                          "bbe1a0c90d51f1171ec868a84c8400a7f5da2afe4529d3d340e0f1cb0558fb80",
	"gzip klauspost-flate v1.20.4 level -2 (mtime 0, os 255)":                         "9f08515370618478fd16b20234511eb2c4eafc8cfafdc680ea8ea6b1d0d57a09",
	"zstd klauspost-zstd v1.15.12 level 2 (checksum true)":                            "4ffe5868ba8e867a61b2a4759abd12c37540fe229a66afbb96f84b457b0138b2",
	"zstd klauspost-zstd v1.15.12 level 1 (checksum true)":                            "a23ea218f1549cffa34b9214483bce7eadd7608573250f24a7df4f18455258e2",
	"zstd klauspost-zstd v1.15.12 level 3 (checksum true)":                            "9cf4212aadedb52f97cc87e4c6abc331ff1d4082c2435e8dec805c2f6417d7b4",
	"zstd klauspost-zstd v1.15.12 level 4 (checksum true)":                            "79f02c70091219127a0d0c9841a3c26a4848b34dbfc16a2cde72ea1907ca61eb",
	"zstd klauspost-zstd v1.20.4 level 2 (checksum true)":                             "bfd5f4ae62a77fe9743a45d56cbdefbedb99b97dd280aa13d063b806d4739a83",
	"zstd klauspost-zstd v1.20.4 level 1 (checksum true)":                             "04d0ec254f65d22920a3b8a43d383f0975f3c17aaf792162a565e759da04b38a",
	"zstd klauspost-zstd v1.20.4 level 3 (checksum true)":                             "59ac744b0a2d9bb657fc1e89dcb60e550519361e93f98598b2852bfa9a86a423",
	"zstd klauspost-zstd v1.20.4 level 4 (checksum true)":                             "d7587af915899d790e15730081d5eee89ea4929aed3a94a9fe71cc7c22bb3dfe",
}

func TestGoldenDigests(t *testing.T) {
	t.Parallel()
	layer := goldenInput(t)
	rs := goldenRecipes()
	if len(rs) != len(goldenDigests) {
		t.Errorf("%d golden recipes, %d digests: record the new ones", len(rs), len(goldenDigests))
	}
	short := map[string]bool{} // implementations the short tier has checked
	for _, r := range rs {
		if impl := fmt.Sprint(r.Encoder, r.Version, r.BlockSize > 0); testing.Short() {
			if short[impl] {
				continue // the short tier holds each implementation's default level
			}
			short[impl] = true
		}
		want, ok := goldenDigests[r.String()]
		if got := sha(recompressed(t, r, layer)); !ok || got != want {
			t.Errorf("%s: sha256:%s, recorded sha256:%s", r, got, want)
			fmt.Printf("\t%q: %q,\n", r.String(), got) // for a deliberate re-recording
		}
	}
}

// The klauspost/compress release recipes name as the module's is the
// release go.mod pins.
func TestGoMod(t *testing.T) {
	f, err := os.Open("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "github.com/klauspost/compress" {
			if fields[1] != klauspostModuleVersion {
				t.Fatalf("go.mod pins klauspost/compress %s, recipes name %s: see third_party/README.md before bumping it", fields[1], klauspostModuleVersion)
			}
			return
		}
	}
	t.Fatal("go.mod does not require github.com/klauspost/compress")
}
