//! The bar chart (hand-written SVG): one group of bars per metric, one bar per proxy, each group scaled
//! to its largest median, labelled with the value and whether higher or lower is better.

use super::report::{fmt, Report, METRICS};

const COLORS: [&str; 3] = ["#1f77b4", "#d62728", "#2ca02c"];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

pub(crate) fn chart(report: &Report, title: &str) -> String {
    let names: Vec<&str> = report.peers.iter().map(|(n, _)| *n).collect();
    let (label_w, bar_w, bar_h) = (330.0, 420.0, 14.0);
    let group_h = bar_h * names.len() as f64 + 14.0;
    let metrics: Vec<_> = METRICS
        .iter()
        .filter(|m| names.iter().any(|n| report.median(n, m.key).is_some()))
        .collect();
    let height = 60.0 + group_h * metrics.len() as f64 + 20.0;
    let width = label_w + bar_w + 120.0;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"20\" font-size=\"14\" font-weight=\"bold\">{}</text>\n",
        escape(title)
    );
    for (i, name) in names.iter().enumerate() {
        let x = 10.0 + i as f64 * 110.0;
        out += &format!(
            "<rect x=\"{x}\" y=\"32\" width=\"12\" height=\"12\" fill=\"{}\"/><text x=\"{}\" y=\"42\">{name}</text>\n",
            COLORS[i % COLORS.len()],
            x + 16.0
        );
    }
    for (g, metric) in metrics.iter().enumerate() {
        let y0 = 60.0 + g as f64 * group_h;
        let medians: Vec<Option<f64>> = names.iter().map(|n| report.median(n, metric.key)).collect();
        let max = medians.iter().flatten().copied().fold(0.0, f64::max);
        let better = if metric.higher_is_better {
            "higher is better"
        } else {
            "lower is better"
        };
        out += &format!(
            "<text x=\"10\" y=\"{}\">{}</text><text x=\"10\" y=\"{}\" fill=\"#666\">{} ({better})</text>\n",
            y0 + 11.0,
            escape(metric.label),
            y0 + 24.0,
            escape(metric.unit)
        );
        for (i, v) in medians.iter().enumerate() {
            let y = y0 + i as f64 * bar_h;
            let Some(v) = v else { continue };
            let w = if max > 0.0 {
                (v / max * bar_w).max(1.0)
            } else {
                1.0
            };
            out += &format!(
                "<rect x=\"{label_w}\" y=\"{y}\" width=\"{w:.1}\" height=\"{}\" fill=\"{}\"/>\
                 <text x=\"{:.1}\" y=\"{}\">{}</text>\n",
                bar_h - 2.0,
                COLORS[i % COLORS.len()],
                label_w + w + 4.0,
                y + bar_h - 4.0,
                fmt(*v)
            );
        }
    }
    out + "</svg>\n"
}
