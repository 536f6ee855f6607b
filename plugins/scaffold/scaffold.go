package scaffold

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"text/template"
)

// ModulePath is the Sluice module a scaffolded plugin requires.
const ModulePath = "github.com/sluicehq/sluice"

//go:embed template/*.tmpl
var templates embed.FS

var validName = regexp.MustCompile(`^[a-z][a-z0-9_-]*$`)

// Options say what to generate.
type Options struct {
	Name string // the plugin's name: binary, module and directory name
	Dir  string // where to write; default ./Name
	// Replace is a local Sluice checkout to build against (a go.mod
	// replace). Empty: FindCheckout looks above Dir and the working
	// directory; if none is found the plugin requires the published module.
	Replace string
	// Tidy runs `go mod tidy` in Dir afterwards, which resolves the
	// dependencies and writes go.sum, so that `go build` works at once.
	Tidy bool
}

// Result says what New did.
type Result struct {
	Dir     string
	Files   []string
	Replace string
}

// New writes the plugin project. It refuses a Dir that exists and is not
// empty, so it never overwrites anyone's work, and it checks everything it
// can before writing anything; if writing fails part way it removes what it
// wrote, so the same command can simply be run again.
func New(o Options) (res Result, err error) {
	if !validName.MatchString(o.Name) {
		return Result{}, fmt.Errorf("plugin name %q: use lower-case letters, digits, - and _, starting with a letter", o.Name)
	}
	if o.Dir == "" {
		o.Dir = o.Name
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return Result{}, err
	}
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return Result{}, fmt.Errorf("%s exists and is not empty; choose another --dir", o.Dir)
	}
	if o.Replace == "" {
		o.Replace = FindCheckout(dir)
		if o.Replace == "" {
			if wd, err := os.Getwd(); err == nil {
				o.Replace = FindCheckout(wd)
			}
		}
	} else if o.Replace, err = filepath.Abs(o.Replace); err != nil {
		return Result{}, err
	} else if FindCheckout(o.Replace) != o.Replace {
		return Result{}, fmt.Errorf("--replace %s: no go.mod of %s there; give the folder of a Sluice checkout (where its go.mod is)", o.Replace, ModulePath)
	}
	if o.Tidy && o.Replace == "" {
		return Result{}, errors.New("no Sluice checkout found above the plugin's folder or the working directory to build against, and no published version to require yet; give --replace /path/to/sluice (a checkout), or --no-tidy to write the files only")
	}
	_, statErr := os.Stat(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Result{}, err
	}
	defer func() {
		if err == nil {
			return
		}
		// Leave nothing half-written behind: the folder if New made it,
		// else the files it wrote into the empty folder it was given.
		if os.IsNotExist(statErr) {
			os.RemoveAll(dir)
			return
		}
		for _, f := range res.Files {
			os.Remove(filepath.Join(dir, f))
		}
	}()
	data := struct{ Name, Replace string }{o.Name, o.Replace}
	res = Result{Dir: dir, Replace: o.Replace}
	for _, f := range []string{"main.go", "main_test.go", "README.md"} {
		// [[ ]] because Go composite literals in the templates contain {{.
		tmpl, err := template.New(f+".tmpl").Delims("[[", "]]").ParseFS(templates, "template/"+f+".tmpl")
		if err != nil {
			return res, err
		}
		var b bytes.Buffer
		if err := tmpl.Execute(&b, data); err != nil {
			return res, err
		}
		if err := os.WriteFile(filepath.Join(dir, f), b.Bytes(), 0o644); err != nil {
			return res, err
		}
		res.Files = append(res.Files, f)
	}
	gomod := fmt.Sprintf("module %s\n\ngo 1.26\n\nrequire %s v0.0.0\n", o.Name, ModulePath)
	if o.Replace != "" {
		gomod += fmt.Sprintf("\nreplace %s => %s\n", ModulePath, o.Replace)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(gomod), 0o644); err != nil {
		return res, err
	}
	res.Files = append(res.Files, "go.mod")
	if o.Tidy {
		cmd := exec.Command("go", "mod", "tidy")
		cmd.Dir = dir
		res.Files = append(res.Files, "go.sum") // removed with the rest if tidy fails
		if out, err := cmd.CombinedOutput(); err != nil {
			return res, fmt.Errorf("go mod tidy in %s: %w\n%s", o.Dir, err, out)
		}
	}
	return res, nil
}

// FindCheckout returns the nearest directory at or above dir whose go.mod
// declares the Sluice module, or "".
func FindCheckout(dir string) string {
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && modulePath(b) == ModulePath {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

func modulePath(gomod []byte) string {
	for _, line := range strings.Split(string(gomod), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "module "); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}
