//! The Events page's chart: grants, denials (a rule or an unknown face) and
//! spoof attempts per hour over the last day, as SVG (plotters).

use plotters::prelude::*;
use serde_json::Value;

/// Hours the chart covers, ending with the current one.
pub const HOURS: usize = 24;

/// What each hour counts: grants, denials, spoof attempts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Hour {
    /// `granted`.
    pub granted: u32,
    /// `denied-*` and `unknown`.
    pub denied: u32,
    /// `spoof`.
    pub spoof: u32,
}

/// One of an hour's counts.
type Count = fn(&Hour) -> u32;

/// The last [`HOURS`] hours up to `now_ms`, oldest first, and the Unix hour
/// the first one starts at.
pub fn count<'a>(events: impl Iterator<Item = &'a Value>, now_ms: i64) -> (Vec<Hour>, i64) {
    let first = now_ms.div_euclid(3_600_000) - (HOURS as i64 - 1);
    let mut hours = vec![Hour::default(); HOURS];
    for e in events {
        let Some(t) = e["time"].as_str().and_then(facegate_store::access_log::parse_iso_time) else { continue };
        let Some(hour) = usize::try_from(t.div_euclid(3_600_000) - first).ok().and_then(|h| hours.get_mut(h)) else { continue };
        match e["kind"].as_str().unwrap_or_default() {
            "granted" => hour.granted += 1,
            "spoof" => hour.spoof += 1,
            k if k.starts_with("denied") || k == "unknown" => hour.denied += 1,
            _ => {}
        }
    }
    (hours, first)
}

/// The chart as an SVG document (`title` above it). Without a system font
/// it is drawn without its labels.
pub fn svg(hours: &[Hour], first_hour: i64, title: &str) -> Result<String, String> {
    let labels = facegate_lab::plot::font_available();
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (900, 260)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let top = hours.iter().map(|h| h.granted.max(h.denied).max(h.spoof)).max().unwrap_or(0).max(1);
        let mut builder = ChartBuilder::on(&root);
        let chart =
            builder.margin(10).x_label_area_size(if labels { 28 } else { 0 }).y_label_area_size(if labels { 36 } else { 0 });
        if labels {
            chart.caption(title, ("sans-serif", 16));
        }
        let mut chart =
            chart.build_cartesian_2d(0f64..hours.len() as f64, 0u32..top + top / 10 + 1).map_err(|e| e.to_string())?;
        if labels {
            let hour_of_day = |x: &f64| format!("{:02}h", (first_hour + *x as i64).rem_euclid(24));
            chart
                .configure_mesh()
                .x_labels(12)
                .x_label_formatter(&hour_of_day)
                .y_desc("per hour (UTC)")
                .disable_x_mesh()
                .draw()
                .map_err(|e| e.to_string())?;
        }
        let series: [(Count, RGBColor, &str); 3] = [
            (|h| h.granted, RGBColor(23, 128, 61), "granted"),
            (|h| h.denied, RGBColor(180, 35, 24), "denied"),
            (|h| h.spoof, RGBColor(220, 104, 3), "spoof"),
        ];
        for (k, (value, color, name)) in series.into_iter().enumerate() {
            let bars = hours.iter().enumerate().map(move |(i, h)| {
                let x = i as f64 + 0.1 + 0.27 * k as f64;
                Rectangle::new([(x, 0), (x + 0.25, value(h))], color.filled())
            });
            let drawn = chart.draw_series(bars).map_err(|e| e.to_string())?;
            if labels {
                drawn.label(name).legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
            }
        }
        if labels {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.8))
                .draw()
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_fall_in_their_hour_and_older_ones_drop_out() {
        // now: 2026-12-07T12:30Z; the chart's first hour is 2026-12-06T13:00Z.
        let now = facegate_store::access_log::parse_iso_time("2026-12-07T12:30:00Z").unwrap();
        let events = [
            json!({"time": "2026-12-07T12:05:00.000Z", "kind": "granted"}),
            json!({"time": "2026-12-07T12:06:00.000Z", "kind": "denied-group"}),
            json!({"time": "2026-12-07T12:07:00.000Z", "kind": "unknown"}),
            json!({"time": "2026-12-07T11:59:59.000Z", "kind": "spoof"}),
            json!({"time": "2026-12-06T13:00:00.000Z", "kind": "granted"}),
            json!({"time": "2026-12-06T12:59:59.000Z", "kind": "granted"}),
            json!({"time": "2026-12-07T12:10:00.000Z", "kind": "site-synced"}),
            json!({"time": "garbage", "kind": "granted"}),
        ];
        let (hours, _) = count(events.iter(), now);
        assert_eq!(hours.len(), HOURS);
        assert_eq!(hours[HOURS - 1], Hour { granted: 1, denied: 2, spoof: 0 });
        assert_eq!(hours[HOURS - 2], Hour { granted: 0, denied: 0, spoof: 1 });
        assert_eq!(hours[0], Hour { granted: 1, denied: 0, spoof: 0 }, "the day before, 13:00, is the first hour");
        assert_eq!(hours.iter().map(|h| h.granted + h.denied + h.spoof).sum::<u32>(), 5);
        let drawn = svg(&hours, 0, "front").unwrap();
        assert!(drawn.starts_with("<svg") && drawn.matches("<rect").count() >= 4, "{drawn}");
    }
}
