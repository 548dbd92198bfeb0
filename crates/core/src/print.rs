//! JSON on stdout, as every program of the project prints it: one object per
//! line for streams (flushed, so a reader sees each line as it happens), or
//! pretty for a single answer.

use std::io::Write;

/// Prints one JSON value as a line on stdout, flushed.
pub fn print_json_line(value: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

/// Prints one JSON value, pretty.
pub fn print_json(value: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(value).expect("JSON values serialise"));
}
