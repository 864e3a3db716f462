//! Gives libmamba.so its SONAME, so programs linked against it record `libmamba.so.0`
//! and keep working across compatible (0.x ABI) updates of the library file.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" || os == "android" || os.ends_with("bsd") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libmamba.so.0");
    }
}
