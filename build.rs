// Records the git revision virtmark is built from, for the provenance of every run,
// and builds the FP-state mediator that User-Mode Linux is started with
// (src/targets/uml/fpshim.c), a shared object embedded in the binary.
use std::path::PathBuf;
use std::process::Command;

fn main() {
    build_uml_fpshim();
    let rev = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .is_some_and(|o| !o.stdout.is_empty());
    let rev = if dirty && rev != "unknown" {
        format!("{rev}-dirty")
    } else {
        rev
    };
    println!("cargo:rustc-env=VIRTMARK_GIT_REVISION={rev}");
    for p in [".git/HEAD", ".git/index"] {
        if std::path::Path::new(p).exists() {
            println!("cargo:rerun-if-changed={p}");
        }
    }
}

/// Compile `src/targets/uml/fpshim.c` into `$OUT_DIR/uml_fpshim.so` with the C
/// compiler (`$CC`, else `cc`; rusqlite's bundled SQLite needs one already).
fn build_uml_fpshim() {
    let src = "src/targets/uml/fpshim.c";
    println!("cargo:rerun-if-changed={src}");
    println!("cargo:rerun-if-env-changed=CC");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("uml_fpshim.so");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args([
            "-O2", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror", "-o",
        ])
        .arg(&out)
        .arg(src)
        .arg("-ldl")
        .status()
        .unwrap_or_else(|e| panic!("running the C compiler {cc:?} for {src}: {e}"));
    assert!(status.success(), "{cc} failed to compile {src}");
}
