//! Raw bindings to `<linux/videodev2.h>`, as the registry crate
//! `v4l2-sys-mit` 0.3.0 makes them with bindgen 0.65.1, generated ahead of
//! time for each target the project builds (`generate.sh`), so that building
//! needs no libclang.
#![allow(clippy::all)]
#![allow(deref_nullptr)]
#![allow(non_camel_case_types)]
#![allow(non_snake_case)]
#![allow(non_upper_case_globals)]
#![allow(dead_code)]

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
include!("bindings/x86_64.rs");
#[cfg(all(target_os = "linux", target_arch = "aarch64"))]
include!("bindings/aarch64.rs");
#[cfg(all(target_os = "linux", target_arch = "arm"))]
include!("bindings/arm.rs");

#[cfg(not(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "arm"))))]
compile_error!(
    "no pre-generated V4L2 bindings for this target: add them with crates/camera/vendor/v4l2-sys-mit/generate.sh TARGET (needs libclang)"
);
