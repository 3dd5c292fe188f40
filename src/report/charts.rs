//! The report's charts, drawn with plotters' SVG backend into strings that
//! the HTML inlines: training curves, base vs tuned exact match, redactions
//! by type, and the serving plan's packing of deployments onto devices.

use plotters::prelude::*;

use super::{ClusterTuning, DeviceView};

const BASE: RGBColor = RGBColor(0xb0, 0xb0, 0xb0);
const TUNED: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const GUIDED: RGBColor = RGBColor(0x2c, 0xa0, 0x2c);
const VAL: RGBColor = RGBColor(0xff, 0x7f, 0x0e);
const PALETTE: [RGBColor; 8] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x17, 0xbe, 0xcf),
];
const FONT: &str = "sans-serif";

/// The name of the category drawn at integer coordinate `v` (bars sit at
/// 0, 1, 2, ...), or nothing between them.
fn category(names: &[String], v: f64) -> String {
    let i = v.round();
    if (v - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < names.len() {
        names[i as usize].clone()
    } else {
        String::new()
    }
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing a chart: {e:?}")
}

/// Loss per step and validation loss, one chart per cluster.
pub fn training_curve(t: &ClusterTuning) -> anyhow::Result<String> {
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (460, 240)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let xmax = t
            .loss
            .iter()
            .chain(&t.val_loss)
            .map(|p| p.0)
            .fold(1.0f64, f64::max);
        let ymax = t
            .loss
            .iter()
            .chain(&t.val_loss)
            .map(|p| p.1)
            .fold(0.1f64, f64::max)
            * 1.05;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "cluster {}: training loss ({}, run {})",
                    t.cluster, t.status, t.run_id
                ),
                (FONT, 14),
            )
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(44)
            .build_cartesian_2d(0f64..xmax, 0f64..ymax)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc("loss")
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new(
                t.loss.iter().copied(),
                TUNED.stroke_width(1),
            ))
            .map_err(err)?
            .label("training loss")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], TUNED));
        if !t.val_loss.is_empty() {
            chart
                .draw_series(
                    LineSeries::new(t.val_loss.iter().copied(), VAL.stroke_width(2)).point_size(3),
                )
                .map_err(err)?
                .label("validation loss")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], VAL));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font((FONT, 12))
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(buf)
}

/// Held-out exact match per cluster: base, tuned, tuned with guided decoding.
pub fn exact_match_bars(ts: &[ClusterTuning]) -> anyhow::Result<String> {
    let mut buf = String::new();
    {
        let w = (160 + 110 * ts.len() as u32).min(1100);
        let root = SVGBackend::with_string(&mut buf, (w, 260)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let n = ts.len().max(1) as f64;
        let labels: Vec<String> = ts
            .iter()
            .map(|t| {
                if t.status == "deployed" {
                    format!("cluster {}", t.cluster)
                } else {
                    format!("cluster {} ({})", t.cluster, t.status)
                }
            })
            .collect();
        let mut chart = ChartBuilder::on(&root)
            .caption("held-out exact match: base vs tuned", (FONT, 15))
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(44)
            .build_cartesian_2d(-0.5f64..n - 0.5, 0f64..100f64)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(ts.len().max(1))
            .x_label_formatter(&|x| category(labels.as_slice(), *x))
            .y_desc("% exact")
            .draw()
            .map_err(err)?;
        type Get = Box<dyn Fn(&ClusterTuning) -> Option<f64>>;
        let series: [(&str, RGBColor, Get); 3] = [
            ("base", BASE, Box::new(|t| t.base.exact_match)),
            ("tuned", TUNED, Box::new(|t| t.tuned.exact_match)),
            (
                "tuned, guided",
                GUIDED,
                Box::new(|t| t.guided_tuned.as_ref().and_then(|g| g.exact_match)),
            ),
        ];
        for (k, (name, colour, get)) in series.iter().enumerate() {
            let x0 = -0.33 + 0.22 * k as f64;
            let colour = *colour;
            chart
                .draw_series(ts.iter().enumerate().filter_map(|(i, t)| {
                    let v = get(t)? * 100.0;
                    let x = i as f64 + x0;
                    Some(Rectangle::new(
                        [(x, 0.0), (x + 0.2, v.max(0.5))],
                        colour.filled(),
                    ))
                }))
                .map_err(err)?
                .label(*name)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled())
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font((FONT, 12))
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(buf)
}

/// Horizontal bars of counts by name (redactions by type).
pub fn count_bars(title: &str, items: &[(String, u64)]) -> anyhow::Result<String> {
    let mut buf = String::new();
    {
        let h = 60 + 22 * items.len().max(1) as u32;
        let root = SVGBackend::with_string(&mut buf, (520, h)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let xmax = items.iter().map(|i| i.1).max().unwrap_or(1).max(1) as f64 * 1.15;
        let n = items.len().max(1) as f64;
        let names: Vec<String> = items.iter().map(|i| i.0.clone()).collect();
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 15))
            .margin(8)
            .x_label_area_size(24)
            .y_label_area_size(130)
            .build_cartesian_2d(0f64..xmax, -0.5f64..n - 0.5)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(items.len().max(1))
            .y_label_formatter(&|y| category(names.as_slice(), *y))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(items.iter().enumerate().map(|(i, (_, c))| {
                let y = i as f64;
                Rectangle::new([(0.0, y - 0.35), (*c as f64, y + 0.35)], TUNED.filled())
            }))
            .map_err(err)?;
        chart
            .draw_series(items.iter().enumerate().map(|(i, (_, c))| {
                Text::new(
                    format!(" {c}"),
                    (*c as f64, i as f64 + 0.2),
                    (FONT, 11).into_font(),
                )
            }))
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(buf)
}

/// The serving plan: per device in use, its memory (0–100%) with each
/// deployment's share as a segment, labelled to the right.
pub fn packing(devices: &[DeviceView]) -> anyhow::Result<String> {
    let mut buf = String::new();
    {
        let h = 80 + 52 * devices.len().max(1) as u32;
        let root = SVGBackend::with_string(&mut buf, (760, h)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let n = devices.len().max(1) as f64;
        let names: Vec<String> = devices
            .iter()
            .map(|d| format!("{} ({:.0} GiB)", d.id, d.capacity_gib))
            .collect();
        let mut chart = ChartBuilder::on(&root)
            .caption("serving plan: share of each device's memory", (FONT, 15))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(150)
            .build_cartesian_2d(0f64..100f64, -0.5f64..n - 0.5)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .x_desc("% of device memory")
            .y_labels(devices.len().max(1))
            .y_label_formatter(&|y| category(names.as_slice(), *y))
            .draw()
            .map_err(err)?;
        let mut shapes = Vec::new();
        let mut texts = Vec::new();
        for (i, d) in devices.iter().enumerate() {
            let y = i as f64;
            let cap = d.capacity_gib.max(1e-9);
            shapes.push(Rectangle::new(
                [(0.0, y - 0.3), (100.0, y + 0.3)],
                BLACK.mix(0.5).stroke_width(1),
            ));
            let mut x = 0.0;
            let mut label = Vec::new();
            for (k, (id, clusters, gib)) in d.deployments.iter().enumerate() {
                let c = PALETTE[k % PALETTE.len()];
                let w = (100.0 * gib / cap).max(0.6);
                shapes.push(Rectangle::new(
                    [(x, y - 0.3), (x + w, y + 0.3)],
                    c.mix(0.85).filled(),
                ));
                x += w;
                let cl: Vec<String> = clusters.iter().map(|c| c.to_string()).collect();
                label.push(format!("{id}: clusters {} ({gib:.2} GiB)", cl.join(",")));
            }
            texts.push(Text::new(
                label.join("; "),
                (x.min(60.0) + 1.0, y + 0.12),
                (FONT, 11).into_font(),
            ));
        }
        chart.draw_series(shapes).map_err(err)?;
        chart.draw_series(texts).map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(buf)
}
