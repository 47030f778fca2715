//! The fuzz binaries link the `lethe` library and with it libtorch; this bakes libtorch's directory in as
//! an rpath (as the main crate's build.rs does for `lethe`), so the targets run without LD_LIBRARY_PATH.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB") {
        println!(
            "cargo:rustc-link-arg=-Wl,-rpath,{}",
            std::path::Path::new(&lib).display()
        );
    }
}
