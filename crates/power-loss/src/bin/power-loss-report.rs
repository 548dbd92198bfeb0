//! Sums the reports the power-loss tests appended to a file (one JSON line
//! each) into the summary `tests/power-loss/run.sh` prints.

use facegate_power_loss::Report;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (json, file) = match args.as_slice() {
        [flag, file] if flag == "--json" => (true, file),
        [file] => (false, file),
        _ => {
            eprintln!("usage: power-loss-report [--json] REPORT_FILE");
            std::process::exit(2);
        }
    };
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| {
        eprintln!("power-loss-report: reading {file}: {e}");
        std::process::exit(2);
    });
    let reports: Vec<Report> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("a report line that is not a report ({e}): {l}")))
        .collect();
    let sum = |f: fn(&Report) -> usize| reports.iter().map(f).sum::<usize>();
    let (cut_points, states, bad) = (sum(|r| r.cut_points), sum(|r| r.states), sum(|r| r.bad.len()));
    if json {
        let files: Vec<&str> = reports.iter().map(|r| r.file.as_str()).collect();
        println!("{}", serde_json::json!({ "cut_points": cut_points, "states": states, "bad": bad, "files": files }));
        return;
    }
    println!("{:<48} {:>10} {:>8} {:>5}", "file", "cut points", "states", "bad");
    for r in &reports {
        println!("{:<48} {:>10} {:>8} {:>5}", r.file, r.cut_points, r.states, r.bad.len());
    }
    println!("{:<48} {:>10} {:>8} {:>5}", "all", cut_points, states, bad);
}
