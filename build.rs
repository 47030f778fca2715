//! Links the binary to the libtorch that torch-sys built against, so that `lethe` runs without the user
//! exporting LD_LIBRARY_PATH and uses a GPU when one is present.
//!
//! torch-sys hands us the directory of libtorch (`DEP_TCH_LIBTORCH_LIB`, from its `links = "tch"` key) when
//! `torch-sys` is a direct dependency. We add it as an rpath, and we name `libtorch_cuda.so` between
//! `--no-as-needed` markers: nothing in our code references a CUDA symbol, so rustc's default
//! `--as-needed` would otherwise drop the library and `tch::Cuda::is_available()` would report false on a
//! machine with a GPU. The CUDA library loads fine on a machine without one.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB").map(PathBuf::from) else {
        println!("cargo:warning=torch-sys did not report a libtorch directory; no rpath is set");
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
    // The version libtorch was built as, for `lethe doctor` when the runtime lookup of the loaded library
    // fails (for instance on a host where libtorch was copied without its Python package around it).
    let version = std::fs::read_to_string(lib.join("../version.py"))
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                l.strip_prefix("__version__ = ")
                    .map(|v| v.trim().trim_matches('\'').to_string())
            })
        })
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=LETHE_BUILT_LIBTORCH_VERSION={version}");
}
