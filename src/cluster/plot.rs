//! The 2-D picture of a clustering: the sampled calls on their first two
//! principal components (the k search's PCA), drawn as a hand-written SVG scatter coloured by
//! cluster (outliers grey), centroids marked, with a legend of each
//! cluster's label. Plain SVG keeps the output byte-deterministic and
//! needs no font or plotting dependency.

use std::fmt::Write;

use ndarray::Array2;

use super::algo::Clustering;
use crate::artifact::clusters::ClustersJson;
use crate::artifact::OUTLIER;

/// Colours of clusters 0.. (Tableau 20), cycled past twenty.
const PALETTE: [&str; 20] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#bcbd22", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2",
    "#9edae5", "#dbdb8d", "#393b79", "#637939",
];
const OUTLIER_COLOUR: &str = "#b0b0b0";

pub fn colour(cluster: i32) -> &'static str {
    if cluster < 0 {
        OUTLIER_COLOUR
    } else {
        PALETTE[cluster as usize % PALETTE.len()]
    }
}

/// What one legend line says.
pub struct LegendEntry {
    pub id: i32,
    pub size: usize,
    pub terms: Vec<String>,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The SVG document. `labels[i]` is the cluster of projected point i,
/// `centroid_ids[j]` the cluster of projected centroid j.
pub fn svg(
    points: &Array2<f64>,
    labels: &[i32],
    centroids: &Array2<f64>,
    centroid_ids: &[i32],
    legend: &[LegendEntry],
    title: &str,
) -> String {
    const W: f64 = 1100.0;
    const H: f64 = 640.0;
    const PLOT: (f64, f64, f64, f64) = (40.0, 50.0, 620.0, 610.0); // x0, y0, x1, y1
    let all = points.rows().into_iter().chain(centroids.rows());
    let (mut xmin, mut xmax, mut ymin, mut ymax) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for r in all {
        xmin = xmin.min(r[0]);
        xmax = xmax.max(r[0]);
        ymin = ymin.min(r[1]);
        ymax = ymax.max(r[1]);
    }
    if xmin > xmax {
        (xmin, xmax, ymin, ymax) = (-1.0, 1.0, -1.0, 1.0);
    }
    let span = |lo: f64, hi: f64| if hi - lo > 1e-12 { hi - lo } else { 1.0 };
    let (sx, sy) = (span(xmin, xmax), span(ymin, ymax));
    let px = |x: f64| PLOT.0 + 10.0 + (x - xmin) / sx * (PLOT.2 - PLOT.0 - 20.0);
    let py = |y: f64| PLOT.3 - 10.0 - (y - ymin) / sy * (PLOT.3 - PLOT.1 - 20.0);

    let mut s = String::with_capacity(64 * (points.nrows() + 64));
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="28" font-size="16">{}</text>"#,
        PLOT.0,
        escape(title)
    );
    let _ = writeln!(
        s,
        r##"<rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="#cccccc"/>"##,
        PLOT.0,
        PLOT.1,
        PLOT.2 - PLOT.0,
        PLOT.3 - PLOT.1
    );
    let _ = writeln!(
        s,
        r##"<text x="{}" y="{}" font-size="11" fill="#666666">PC1</text><text x="{}" y="{}" font-size="11" fill="#666666">PC2</text>"##,
        PLOT.2 - 24.0,
        PLOT.3 + 16.0,
        PLOT.0 - 30.0,
        PLOT.1 + 10.0
    );
    // Outliers first, so clusters draw over them.
    let mut order: Vec<usize> = (0..points.nrows()).collect();
    order.sort_by_key(|&i| (labels[i] >= 0, i));
    s.push_str("<g fill-opacity=\"0.6\">\n");
    for i in order {
        let _ = writeln!(
            s,
            r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{}"/>"#,
            px(points[[i, 0]]),
            py(points[[i, 1]]),
            colour(labels[i])
        );
    }
    s.push_str("</g>\n");
    for (j, &id) in centroid_ids.iter().enumerate() {
        let (x, y) = (px(centroids[[j, 0]]), py(centroids[[j, 1]]));
        let _ = writeln!(
            s,
            r#"<circle cx="{x:.1}" cy="{y:.1}" r="7" fill="{}" stroke="black" stroke-width="1.5"/><text x="{:.1}" y="{:.1}" font-size="11" font-weight="bold">{id}</text>"#,
            colour(id),
            x + 9.0,
            y + 4.0
        );
    }
    let mut y = PLOT.1 + 8.0;
    for e in legend {
        let terms = e
            .terms
            .iter()
            .take(3)
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        let name = if e.id < 0 {
            format!("outliers ({})", e.size)
        } else {
            format!("{} ({}) {}", e.id, e.size, terms)
        };
        let _ = writeln!(
            s,
            r#"<circle cx="{:.1}" cy="{:.1}" r="5" fill="{}"/><text x="{:.1}" y="{:.1}" font-size="12">{}</text>"#,
            PLOT.2 + 24.0,
            y,
            colour(e.id),
            PLOT.2 + 34.0,
            y + 4.0,
            escape(&name)
        );
        y += 18.0;
        if y > H - 10.0 {
            break;
        }
    }
    s.push_str("</svg>\n");
    s
}

/// The SVG of a clustering: its sample on the first two principal
/// components, centroids projected the same way, and a legend.
pub fn render(c: &Clustering, s: &ClustersJson) -> String {
    let (reduction, reduced, sample_idx, labels) =
        (&c.reduction, &c.reduced, &c.sample_idx, &c.labels);
    let centroids = Array2::from_shape_vec(
        (s.clusters.len(), s.features.dims),
        s.clusters
            .iter()
            .flat_map(|c| c.centroid.iter().copied())
            .collect(),
    )
    .expect("centroid widths match the features");
    let centroids = reduction.apply(centroids.view());
    let two = |a: &Array2<f32>| {
        let mut out = Array2::<f64>::zeros((a.nrows(), 2));
        for j in 0..a.ncols().min(2) {
            out.column_mut(j).assign(&a.column(j).mapv(f64::from));
        }
        out
    };
    let point_labels: Vec<i32> = sample_idx.iter().map(|&i| labels[i]).collect();
    let mut legend: Vec<LegendEntry> = s
        .clusters
        .iter()
        .map(|c| LegendEntry {
            id: c.id,
            size: c.size,
            terms: vec![crate::ml::features::clean_and_truncate(&c.label, 60)],
        })
        .collect();
    if s.outliers > 0 {
        legend.push(LegendEntry {
            id: OUTLIER,
            size: s.outliers,
            terms: Vec::new(),
        });
    }
    let ids: Vec<i32> = s.clusters.iter().map(|c| c.id).collect();
    let title = format!(
        "{} calls, {} clusters ({}), {} outliers; first two principal components of {} sampled calls",
        s.calls,
        s.k,
        s.algorithm,
        s.outliers,
        sample_idx.len()
    );
    svg(
        &two(reduced),
        &point_labels,
        &two(&centroids),
        &ids,
        &legend,
        &title,
    )
}
