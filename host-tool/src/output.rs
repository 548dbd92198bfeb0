//! Printing: readable tables, or JSON with `--json`; errors with hints.

pub use facegate_core::print::{print_json, print_json_line};
use facegate_protocol::{ClientError, WireError};
pub use facegate_store::access_log::iso_time;

/// A readable table: columns padded to their widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect::<Vec<_>>().join("  ").trim_end().to_string()
    };
    let mut out = vec![line(headers.iter().map(|h| h.to_string()).collect())];
    out.extend(rows.iter().map(|r| line(r.clone())));
    out.join("\n")
}

/// A hint carried inside an error, printed by `main`.
#[derive(Debug)]
pub struct Hint(pub &'static str);

impl std::fmt::Display for Hint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Hint {}

/// An error with its hint attached.
pub fn client_error(e: ClientError) -> anyhow::Error {
    let hint = e.hint();
    let err = anyhow::Error::new(e);
    match hint {
        Some(h) => err.context(Hint(h)),
        None => err,
    }
}

/// A wire error with its hint attached.
pub fn wire_error(e: WireError) -> anyhow::Error {
    client_error(ClientError::Device(e))
}

/// Prints an error, its causes and a hint, as espflash does.
pub fn report(e: &anyhow::Error) {
    // anyhow finds a context of type Hint anywhere in the chain.
    let hint = e.downcast_ref::<Hint>().map(|h| h.0);
    let mut chain = e.chain().filter(|c| Some(c.to_string().as_str()) != hint);
    if let Some(first) = chain.next() {
        eprintln!("error: {first}");
    }
    for cause in chain {
        eprintln!("  caused by: {cause}");
    }
    if let Some(h) = hint {
        eprintln!("hint: {h}");
    }
}
