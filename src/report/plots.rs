//! The run folder's `plots/`: learning curves from history.jsonl and, for PAC runs, the learned
//! noise std per tensor. PNG through plotters' bitmap backend.
//!
//! Text (titles, axis labels, legends) needs a TrueType font, read at run time: the file named by
//! `PAC_WGPU_PLOT_FONT` if set, else the first of a few common system fonts (DejaVu Sans,
//! Liberation Sans, Noto Sans, FreeSans, Arial). Without one the plots are drawn without any text
//! (curves, bars and grid only) instead of failing.
//!
//! Each PNG is rendered into `<name>.part.png` beside its destination and renamed over it, so a
//! reader never sees half a file.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::run::EpochRecord;

/// Pixel size of every learning-curve plot (loss, dev, noise, kl).
pub const CURVE_SIZE: (u32, u32) = (1000, 600);

/// Width of the strip right of a learning-curve chart that holds its legend, off the data.
pub const LEGEND_WIDTH: u32 = 250;

/// Pixel size of the σ-per-tensor plot for `n` tensors: 10 px per tensor, 1000 to 4000 wide.
pub fn sigma_plot_size(n: usize) -> (u32, u32) {
    let width = 200usize
        .saturating_add(n.saturating_mul(10))
        .clamp(1000, 4000);
    (width as u32, 600)
}

/// The family name fonts are registered under; plotters' default text styles ask for it.
const FAMILY: &str = "sans-serif";

const FONT_ENV: &str = "PAC_WGPU_PLOT_FONT";

const FONT_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/liberation2/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
    "/usr/share/fonts/noto/NotoSans-Regular.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "/Library/Fonts/Arial.ttf",
    r"C:\Windows\Fonts\arial.ttf",
    r"C:\Windows\Fonts\segoeui.ttf",
];

/// Whether a font was found and registered (looked up once per process).
fn text_enabled() -> bool {
    static FOUND: OnceLock<bool> = OnceLock::new();
    *FOUND.get_or_init(|| {
        let from_env = std::env::var_os(FONT_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        from_env
            .into_iter()
            .chain(FONT_CANDIDATES.iter().map(PathBuf::from))
            .any(|path| register(&path))
    })
}

fn register(path: &Path) -> bool {
    let Ok(bytes) = std::fs::read(path) else {
        return false;
    };
    // plotters keeps registered fonts for the life of the process; this happens once.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font(FAMILY, FontStyle::Normal, bytes).is_ok()
}

const TITLE_SIZE: u32 = 26;
const DESC_SIZE: u32 = 19;
const LABEL_SIZE: u32 = 15;
const LEGEND_SIZE: u32 = 16;

const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];
const GREY: RGBColor = RGBColor(120, 120, 120);

/// One task of a report: each method's values over seeds.
pub struct Panel {
    pub title: String,
    pub y_desc: String,
    pub methods: Vec<(String, Vec<f64>)>,
}

/// Pixel size of report.png for `n` panels: 420 px per panel, side by side.
pub fn report_plot_size(n: usize) -> (u32, u32) {
    ((n.max(1) * 420).min(4200) as u32, 520)
}

/// report.png: a panel per task, one column per method with a dot per seed and a bar at their
/// mean; method names under the axis (no legend, so nothing covers the data).
pub fn write_report_plot(path: &Path, panels: &[Panel]) -> Result<()> {
    report_plot(path, panels, text_enabled())
}

fn report_plot(path: &Path, panels: &[Panel], text: bool) -> Result<()> {
    render(path, report_plot_size(panels.len()), |root| {
        let areas = root.split_evenly((1, panels.len().max(1)));
        for (panel, area) in panels.iter().zip(&areas) {
            report_panel(area, panel, text)?;
        }
        Ok(())
    })
}

fn report_panel(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    panel: &Panel,
    text: bool,
) -> Result<()> {
    let m = panel.methods.len();
    let y_range = linear_bounds(panel.methods.iter().flat_map(|(_, v)| v.iter().copied()));
    let x_range = -0.5..(m.max(1) as f64 - 0.5);
    let mut builder = ChartBuilder::on(area);
    builder.margin(14);
    if text {
        builder
            .caption(&panel.title, (FAMILY, DESC_SIZE))
            .x_label_area_size(40)
            .y_label_area_size(64);
    }
    let mut chart = builder.build_cartesian_2d(x_range, y_range.clone())?;
    let mut mesh = chart.configure_mesh();
    mesh.disable_x_mesh()
        .x_labels(0)
        .light_line_style(BLACK.mix(0.04))
        .bold_line_style(BLACK.mix(0.12))
        .y_label_formatter(&|v| plain(*v));
    if text {
        mesh.y_desc(panel.y_desc.as_str())
            .label_style((FAMILY, LABEL_SIZE))
            .axis_desc_style((FAMILY, DESC_SIZE));
    }
    mesh.draw()?;
    for (k, (name, values)) in panel.methods.iter().enumerate() {
        let color = PALETTE[k % PALETTE.len()];
        let x = k as f64;
        let n = values.len().max(1) as f64;
        // Seeds spread a little sideways so equal values stay visible.
        let dots = values.iter().enumerate().map(|(i, v)| {
            let dx = (i as f64 - (n - 1.0) / 2.0) * 0.12 / n.max(2.0) * 2.0;
            Circle::new((x + dx, *v), 5, color.filled())
        });
        chart.draw_series(dots)?;
        if !values.is_empty() {
            let mean = values.iter().sum::<f64>() / values.len() as f64;
            chart.draw_series(std::iter::once(PathElement::new(
                [(x - 0.3, mean), (x + 0.3, mean)],
                BLACK.stroke_width(3),
            )))?;
        }
        if text {
            // Backend coordinates are the whole image's; the panel's own start at its corner.
            let (px, py) = chart.backend_coord(&(x, y_range.start));
            let (ox, oy) = area.get_base_pixel();
            let style = TextStyle::from((FAMILY, LABEL_SIZE).into_font())
                .color(&BLACK)
                .pos(Pos::new(HPos::Center, VPos::Top));
            area.draw(&Text::new(name.clone(), (px - ox, py - oy + 8), style))?;
        }
    }
    Ok(())
}

/// Learning curves from history.jsonl's records.
///
/// `dir` is the run folder; the plots go to `dir/plots/` (created if missing):
/// - `loss.png`: train loss per epoch, loss2 on a right axis, and a dashed line where stage 1
///   ends (the last epoch with loss2, when later epochs exist);
/// - `dev.png`: every dev metric per epoch (when any record has dev metrics), and a marker at
///   the best epoch of `main_metric` (the task's, which picks checkpoint `best`);
/// - `noise.png`: mean σ of the encoder and head and the mean prior std per epoch, log scale
///   (PAC runs);
/// - `kl.png`: KL(posterior ‖ prior) per epoch, log scale (PAC runs with a stage 1); the KL
///   is 0 at the start, which a log axis cannot show, and the title says so.
///
/// Log axes span whole decades and label each one; legends sit in a strip right of the chart
/// ([`LEGEND_WIDTH`]). Non-finite values (and non-positive ones on log axes) are skipped; a
/// series with no such value is left out.
pub fn write_history_plots(
    dir: &Path,
    history: &[EpochRecord],
    main_metric: Option<&str>,
) -> Result<()> {
    history_plots(dir, history, main_metric, text_enabled())
}

/// The first epoch with the highest `metric` on dev, and that value.
fn best_epoch(history: &[EpochRecord], metric: &str) -> Option<(f64, f64)> {
    let evaluated = history.iter().filter_map(|r| {
        let value = *r.dev.as_ref()?.get(metric)?;
        value.is_finite().then_some((r.epoch as f64, value))
    });
    evaluated.fold(None, |best, (e, v)| match best {
        Some((_, b)) if b >= v => best,
        _ => Some((e, v)),
    })
}

fn history_plots(
    dir: &Path,
    history: &[EpochRecord],
    main_metric: Option<&str>,
    text: bool,
) -> Result<()> {
    let plots = dir.join("plots");
    std::fs::create_dir_all(&plots)
        .with_context(|| format!("{}: cannot create folder", plots.display()))?;
    let epochs: Vec<f64> = history.iter().map(|r| r.epoch as f64).collect();
    let x_range = epoch_range(&epochs);
    let column = |value: fn(&EpochRecord) -> Option<f64>| -> Vec<(f64, f64)> {
        history
            .iter()
            .zip(&epochs)
            .filter_map(|(r, &e)| value(r).filter(|v| v.is_finite()).map(|v| (e, v)))
            .collect()
    };
    let pac = history.iter().any(|r| r.stage.is_some());

    // Stage 1 ends at the last epoch that logged loss2, if training went on after it.
    let loss2 = column(|r| r.loss2);
    let max_epoch = epochs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let stage1_end = loss2
        .iter()
        .map(|&(e, _)| e)
        .fold(None, |m: Option<f64>, e| Some(m.map_or(e, |m| m.max(e))))
        .filter(|&e| e < max_epoch);

    // loss.png
    let primary = vec![Series::new("train loss", column(|r| Some(r.train_loss)))];
    let secondary = (!loss2.is_empty()).then(|| Series::new("loss2 (right axis)", loss2));
    line_plot(
        &plots.join("loss.png"),
        &Curves {
            title: "Training loss",
            y_desc: "loss",
            x_range: x_range.clone(),
            series: primary,
            secondary,
            secondary_desc: "loss2",
            log_y: false,
            stage1_end,
        },
        text,
    )?;

    // dev.png
    if history.iter().any(|r| r.dev.is_some()) {
        let mut names: Vec<&String> = Vec::new();
        for dev in history.iter().filter_map(|r| r.dev.as_ref()) {
            for name in dev.keys() {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        let mut series: Vec<Series> = names
            .iter()
            .map(|&name| {
                let points = history
                    .iter()
                    .zip(&epochs)
                    .filter_map(|(r, &e)| {
                        let v = r.dev.as_ref()?.get(name)?;
                        v.is_finite().then_some((e, *v))
                    })
                    .collect();
                Series::new(&format!("dev {name}"), points)
            })
            .collect();
        if let Some((epoch, value)) = main_metric.and_then(|m| best_epoch(history, m)) {
            series.push(Series::new(
                &format!("best: epoch {epoch}"),
                vec![(epoch, value)],
            ));
        }
        line_plot(
            &plots.join("dev.png"),
            &Curves {
                title: "Dev metrics",
                y_desc: "metric",
                x_range: x_range.clone(),
                series,
                secondary: None,
                secondary_desc: "",
                log_y: false,
                stage1_end,
            },
            text,
        )?;
    }

    // noise.png
    type Field = fn(&EpochRecord) -> Option<f64>;
    let noise: [(Field, &str); 3] = [
        (|r| r.sigma_encoder, "mean σ encoder"),
        (|r| r.sigma_head, "mean σ head"),
        (|r| r.prior_std, "mean prior std"),
    ];
    if pac {
        let series = noise
            .iter()
            .map(|&(field, label)| {
                let positive = column(field)
                    .into_iter()
                    .filter(|&(_, v)| v > 0.0)
                    .collect();
                Series::new(label, positive)
            })
            .collect();
        line_plot(
            &plots.join("noise.png"),
            &Curves {
                title: "Noise: learned posterior σ and prior std",
                y_desc: "std (log scale)",
                x_range: x_range.clone(),
                series,
                secondary: None,
                secondary_desc: "",
                log_y: true,
                stage1_end: None,
            },
            text,
        )?;
    }

    // kl.png
    if history.iter().any(|r| r.stage == Some(1)) {
        let kl = column(|r| r.kl);
        let positive: Vec<(f64, f64)> = kl.iter().copied().filter(|&(_, v)| v > 0.0).collect();
        let title = match kl.len() - positive.len() {
            0 => "KL(posterior || prior)",
            _ => "KL(posterior || prior); 0 at the start, not drawn on a log axis",
        };
        line_plot(
            &plots.join("kl.png"),
            &Curves {
                title,
                y_desc: "KL (nats, log scale)",
                x_range,
                series: vec![Series::new("KL", positive)],
                secondary: None,
                secondary_desc: "",
                log_y: true,
                stage1_end: None,
            },
            text,
        )?;
    }
    Ok(())
}

/// The learned noise std per layer at the end of stage 1: one bar per trainable tensor, in the
/// order given, colored by parameter type (attention, FFN, LayerNorm, embeddings, head, other;
/// derived from the HF name), log-scale y, encoder layers separated and labelled. The legend
/// gives each type's tensor count and mean σ. Non-finite or non-positive σ are left out.
/// Parent folders are created; the size is [`sigma_plot_size`]`(layers.len())`.
pub fn write_sigma_plot(path: &Path, layers: &[(String, f64)]) -> Result<()> {
    sigma_plot(path, layers, text_enabled())
}

fn sigma_plot(path: &Path, layers: &[(String, f64)], text: bool) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("{}: cannot create folder", parent.display()))?;
    }
    let n = layers.len();
    let (lo, hi) = log_bounds(layers.iter().map(|(_, s)| *s));
    // Bars rise from the bottom; the top ~30% of the log range is left free for the legend.
    let headroom = (hi / lo).powf(0.45).max(4.0);
    let y_range = lo..hi * headroom;
    let x_range = -0.5..(n.max(1) as f64 - 0.5);
    let segments = segments(layers);

    render(path, sigma_plot_size(n), |root| {
        let mut builder = ChartBuilder::on(root);
        builder.margin(16);
        if text {
            builder
                .caption(
                    "Learned noise std σ per trainable tensor (end of stage 1)",
                    (FAMILY, TITLE_SIZE),
                )
                .x_label_area_size(62)
                .y_label_area_size(86);
        }
        let mut chart = builder.build_cartesian_2d(x_range.clone(), y_range.clone().log_scale())?;
        let mut mesh = chart.configure_mesh();
        mesh.disable_x_mesh()
            .x_labels(0)
            .light_line_style(WHITE.mix(0.0))
            .bold_line_style(BLACK.mix(0.12))
            .y_label_formatter(&|v| sci(*v));
        if text {
            mesh.x_desc("trainable tensor, in model order")
                .y_desc("σ (log scale)")
                .label_style((FAMILY, LABEL_SIZE))
                .axis_desc_style((FAMILY, DESC_SIZE));
        }
        mesh.draw()?;

        // Separators between segments (encoder layers, embeddings, head), labels under the axis.
        let px_per_tensor = chart.plotting_area().dim_in_pixel().0 as f64 / n.max(1) as f64;
        for (k, seg) in segments.iter().enumerate() {
            if k > 0 {
                let x = seg.first as f64 - 0.5;
                chart.draw_series(DashedLineSeries::new(
                    [(x, y_range.start), (x, y_range.end)],
                    4,
                    4,
                    GREY.mix(0.6).stroke_width(1),
                ))?;
            }
            if text {
                let width_px = (seg.last - seg.first + 1) as f64 * px_per_tensor;
                let full = seg.label.chars().count() as f64 * LABEL_SIZE as f64 * 0.6 + 8.0;
                let label = if width_px >= full {
                    seg.label.clone()
                } else {
                    seg.short.clone()
                };
                let centre = (seg.first + seg.last) as f64 / 2.0;
                let (px, py) = chart.backend_coord(&(centre, y_range.start));
                let style = TextStyle::from((FAMILY, LABEL_SIZE).into_font())
                    .color(&RGBColor(60, 60, 60))
                    .pos(Pos::new(HPos::Center, VPos::Top));
                root.draw(&Text::new(label, (px, py + 8), style))?;
            }
        }

        let half = 0.4_f64.min(0.5 - 0.5 / px_per_tensor.max(2.0));
        for kind in ParamKind::ALL {
            let members: Vec<(usize, f64)> = layers
                .iter()
                .enumerate()
                .filter(|(_, (name, _))| ParamKind::of(name) == kind)
                .map(|(i, (_, s))| (i, *s))
                .collect();
            if members.is_empty() {
                continue;
            }
            let shown: Vec<(usize, f64)> = members
                .iter()
                .copied()
                .filter(|&(_, s)| s.is_finite() && s > 0.0)
                .collect();
            let color = kind.color();
            let bars = shown.iter().map(move |&(i, s)| {
                let x = i as f64;
                Rectangle::new([(x - half, y_range.start), (x + half, s)], color.filled())
            });
            let drawn = chart.draw_series(bars)?;
            if text {
                let mean = if shown.is_empty() {
                    "n/a".to_string()
                } else {
                    sci(shown.iter().map(|&(_, s)| s).sum::<f64>() / shown.len() as f64)
                };
                let plural = if members.len() == 1 { "" } else { "s" };
                drawn
                    .label(format!(
                        "{} ({} tensor{plural}, mean σ {})",
                        kind.name(),
                        members.len(),
                        mean
                    ))
                    .legend(move |(x, y)| {
                        Rectangle::new([(x, y - 6), (x + 16, y + 6)], color.filled())
                    });
            }
        }
        if text && n > 0 {
            // In the headroom above the bars.
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .margin(12)
                .background_style(WHITE.mix(0.9))
                .border_style(BLACK.mix(0.5))
                .label_font((FAMILY, LEGEND_SIZE))
                .draw()?;
        }
        Ok(())
    })
}

/// A run of consecutive tensors shown under one label: an encoder layer, the embeddings (their
/// LayerNorm included), or other tensors of one type such as the head.
struct Segment {
    label: String,
    /// A shorter label for a narrow segment.
    short: String,
    first: usize,
    last: usize,
}

fn segments(layers: &[(String, f64)]) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::new();
    for (i, (name, _)) in layers.iter().enumerate() {
        let (label, short) = match layer_index(name) {
            Some(l) => (format!("layer {l}"), format!("{l}")),
            None if name.to_ascii_lowercase().contains("embeddings") => {
                ("embeddings".to_string(), "emb".to_string())
            }
            None => {
                let kind = ParamKind::of(name).name().to_string();
                (kind.clone(), kind)
            }
        };
        match out.last_mut() {
            Some(seg) if seg.label == label => seg.last = i,
            _ => out.push(Segment {
                label,
                short,
                first: i,
                last: i,
            }),
        }
    }
    out
}

/// The parameter type of a trainable tensor, from its HF name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    Attention,
    Ffn,
    LayerNorm,
    Embeddings,
    Head,
    Other,
}

impl ParamKind {
    pub const ALL: [ParamKind; 6] = [
        ParamKind::Attention,
        ParamKind::Ffn,
        ParamKind::LayerNorm,
        ParamKind::Embeddings,
        ParamKind::Head,
        ParamKind::Other,
    ];

    /// `bert.encoder.layer.3.attention.self.query.weight` → attention,
    /// `…intermediate.dense.bias` / `…layer.3.output.dense.weight` → FFN, any `LayerNorm` →
    /// LayerNorm, `bert.embeddings.word_embeddings.weight` → embeddings, the pooler → other, and
    /// anything outside the encoder (`classifier.weight`, `out.bias`) → head.
    pub fn of(name: &str) -> ParamKind {
        let lower = name.to_ascii_lowercase();
        if lower.contains("layernorm") || lower.contains("layer_norm") || lower.contains(".ln_") {
            ParamKind::LayerNorm
        } else if lower.contains("embeddings") {
            ParamKind::Embeddings
        } else if lower.contains("attention") || lower.contains("attn") {
            ParamKind::Attention
        } else if lower.contains("intermediate")
            || lower.contains("ffn")
            || lower.contains("mlp")
            || (lower.contains("output.") && layer_index(name).is_some())
        {
            ParamKind::Ffn
        } else if lower.contains("pooler")
            || lower.contains("encoder.")
            || layer_index(name).is_some()
        {
            ParamKind::Other
        } else {
            ParamKind::Head
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ParamKind::Attention => "attention",
            ParamKind::Ffn => "FFN",
            ParamKind::LayerNorm => "LayerNorm",
            ParamKind::Embeddings => "embeddings",
            ParamKind::Head => "head",
            ParamKind::Other => "other",
        }
    }

    fn color(self) -> RGBColor {
        match self {
            ParamKind::Attention => PALETTE[0],
            ParamKind::Ffn => PALETTE[1],
            ParamKind::LayerNorm => PALETTE[2],
            ParamKind::Embeddings => PALETTE[4],
            ParamKind::Head => PALETTE[3],
            ParamKind::Other => GREY,
        }
    }
}

/// The encoder layer a tensor belongs to: N in `….layer.N.…` / `….layers.N.…`.
fn layer_index(name: &str) -> Option<usize> {
    let parts: Vec<&str> = name.split('.').collect();
    parts
        .windows(2)
        .find(|w| w[0] == "layer" || w[0] == "layers")
        .and_then(|w| w[1].parse().ok())
}

struct Series {
    label: String,
    /// (epoch, value), finite values only.
    points: Vec<(f64, f64)>,
}

impl Series {
    fn new(label: &str, points: Vec<(f64, f64)>) -> Series {
        Series {
            label: label.to_string(),
            points,
        }
    }
}

struct Curves<'a> {
    title: &'a str,
    y_desc: &'a str,
    x_range: Range<f64>,
    series: Vec<Series>,
    /// Drawn against a right-hand axis of its own.
    secondary: Option<Series>,
    secondary_desc: &'a str,
    log_y: bool,
    stage1_end: Option<f64>,
}

type Chart<'a, Y> = ChartContext<'a, BitMapBackend<'a>, Cartesian2d<RangedCoordf64, Y>>;

fn line_plot(path: &Path, c: &Curves, text: bool) -> Result<()> {
    let primary_values = c.series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
    render(path, CURVE_SIZE, |root| {
        let (area, side) = root.split_horizontally(CURVE_SIZE.0 - LEGEND_WIDTH);
        let area = if text { area } else { root.clone() };
        let mut builder = ChartBuilder::on(&area);
        builder.margin(16);
        if text {
            builder
                .caption(c.title, (FAMILY, TITLE_SIZE))
                .x_label_area_size(52)
                .y_label_area_size(86);
            if c.secondary.is_some() {
                builder.right_y_label_area_size(86);
            }
        }
        if c.log_y {
            let (lo, hi) = decade_bounds(primary_values.clone());
            let y = (lo..hi).log_scale().with_key_points(decades(lo, hi));
            let mut chart = builder.build_cartesian_2d(c.x_range.clone(), y)?;
            let mut mesh = chart.configure_mesh();
            mesh.y_label_formatter(&|v| sci(*v));
            mesh_style(&mut mesh, c, text);
            mesh.draw()?;
            draw_lines(&mut chart, &c.series, lo..hi, c.stage1_end)?;
        } else {
            let y = linear_bounds(primary_values.clone());
            let chart = builder.build_cartesian_2d(c.x_range.clone(), y.clone())?;
            match &c.secondary {
                None => {
                    let mut chart = chart;
                    let mut mesh = chart.configure_mesh();
                    mesh.y_label_formatter(&|v| plain(*v));
                    mesh_style(&mut mesh, c, text);
                    mesh.draw()?;
                    draw_lines(&mut chart, &c.series, y, c.stage1_end)?;
                }
                Some(second) => {
                    // The secondary coordinates take the right label area, so they are set
                    // before the primary mesh is drawn (which would otherwise label both sides).
                    let y2 = linear_bounds(second.points.iter().map(|p| p.1));
                    let mut chart = chart.set_secondary_coord(c.x_range.clone(), y2);
                    {
                        let mut mesh = chart.configure_mesh();
                        mesh.y_label_formatter(&|v| plain(*v));
                        mesh_style(&mut mesh, c, text);
                        mesh.draw()?;
                    }
                    let color = PALETTE[c.series.len() % PALETTE.len()];
                    let mut axes = chart.configure_secondary_axes();
                    axes.y_label_formatter(&|v| plain(*v));
                    if text {
                        axes.y_desc(c.secondary_desc)
                            .label_style((FAMILY, LABEL_SIZE).into_font().color(&color))
                            .axis_desc_style((FAMILY, DESC_SIZE).into_font().color(&color));
                    }
                    axes.draw()?;
                    draw_lines(&mut chart, &c.series, y, c.stage1_end)?;
                    chart.draw_secondary_series(
                        LineSeries::new(second.points.iter().copied(), color.stroke_width(2))
                            .point_size(point_size(second.points.len())),
                    )?;
                }
            }
        }
        if text {
            legend(&side, &legend_entries(c))?;
        }
        Ok(())
    })
}

fn mesh_style<Y>(
    mesh: &mut plotters::chart::MeshStyle<'_, '_, RangedCoordf64, Y, BitMapBackend<'_>>,
    c: &Curves,
    text: bool,
) where
    Y: Ranged,
{
    mesh.x_label_formatter(&|v| integer_label(*v))
        .light_line_style(BLACK.mix(0.04))
        .bold_line_style(BLACK.mix(0.12));
    if text {
        mesh.x_desc("epoch")
            .y_desc(c.y_desc)
            .label_style((FAMILY, LABEL_SIZE))
            .axis_desc_style((FAMILY, DESC_SIZE));
    }
}

/// Draws `series` (colors from `PALETTE`, by position) and the stage-1 marker.
fn draw_lines<'a, Y>(
    chart: &mut Chart<'a, Y>,
    series: &[Series],
    y_range: Range<f64>,
    stage1_end: Option<f64>,
) -> Result<()>
where
    Y: Ranged<ValueType = f64>,
{
    if let Some(x) = stage1_end {
        chart.draw_series(DashedLineSeries::new(
            [(x, y_range.start), (x, y_range.end)],
            6,
            5,
            GREY.stroke_width(2),
        ))?;
    }
    for (k, s) in series.iter().enumerate() {
        if s.points.is_empty() {
            continue;
        }
        let color = PALETTE[k % PALETTE.len()];
        chart.draw_series(
            LineSeries::new(s.points.iter().copied(), color.stroke_width(2))
                .point_size(point_size(s.points.len())),
        )?;
    }
    Ok(())
}

/// The legend's lines: the stage-1 marker, then every drawn series with its color.
fn legend_entries(c: &Curves) -> Vec<(String, RGBColor)> {
    let mut entries = Vec::new();
    if c.stage1_end.is_some() {
        entries.push(("end of stage 1".to_string(), GREY));
    }
    for (k, s) in c.series.iter().enumerate() {
        if !s.points.is_empty() {
            entries.push((s.label.clone(), PALETTE[k % PALETTE.len()]));
        }
    }
    if let Some(second) = c.secondary.as_ref().filter(|s| !s.points.is_empty()) {
        entries.push((
            second.label.clone(),
            PALETTE[c.series.len() % PALETTE.len()],
        ));
    }
    entries
}

/// A framed legend at the top of `area` (the strip beside the chart), one line per entry.
fn legend(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    entries: &[(String, RGBColor)],
) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    const ROW: i32 = 26;
    let (width, _) = area.dim_in_pixel();
    let (left, top) = (4, 60);
    let bottom = top + 10 + ROW * entries.len() as i32;
    area.draw(&Rectangle::new(
        [(left, top), (width as i32 - 8, bottom)],
        BLACK.mix(0.5).stroke_width(1),
    ))?;
    for (i, (label, color)) in entries.iter().enumerate() {
        let y = top + 5 + ROW * i as i32 + ROW / 2;
        area.draw(&PathElement::new(
            [(left + 10, y), (left + 34, y)],
            color.stroke_width(3),
        ))?;
        let style = TextStyle::from((FAMILY, LEGEND_SIZE).into_font())
            .color(&BLACK)
            .pos(Pos::new(HPos::Left, VPos::Center));
        area.draw(&Text::new(label.clone(), (left + 42, y), style))?;
    }
    Ok(())
}

/// Markers on sparse curves (few evaluations), plain lines on long ones.
fn point_size(n: usize) -> u32 {
    if n <= 60 { 3 } else { 0 }
}

/// Renders into `<path>.part.png` (the bitmap encoder picks the format from the extension), then
/// renames it over `path`; the temporary file is removed on failure.
fn render(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>) -> Result<()>,
) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".part.png");
    let tmp = PathBuf::from(tmp);
    let result = (|| -> Result<()> {
        let root = BitMapBackend::new(&tmp, size).into_drawing_area();
        root.fill(&WHITE)?;
        draw(&root)?;
        root.present()?;
        Ok(())
    })()
    .and_then(|()| std::fs::rename(&tmp, path).map_err(anyhow::Error::from));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.context(format!("{}: cannot write plot", path.display())));
    }
    Ok(())
}

fn epoch_range(epochs: &[f64]) -> Range<f64> {
    let lo = epochs.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = epochs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() {
        0.0..1.0
    } else if hi - lo < 1.0 {
        lo - 1.0..hi + 1.0
    } else {
        // A little room so the end markers are not cut in half.
        let pad = (hi - lo) * 0.015;
        lo - pad..hi + pad
    }
}

/// A linear y range covering the finite `values` with 6% padding.
fn linear_bounds(values: impl Iterator<Item = f64>) -> Range<f64> {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return 0.0..1.0;
    }
    let span = hi - lo;
    let pad = if span > 0.0 {
        span * 0.06
    } else {
        (lo.abs() * 0.1).max(0.05)
    };
    lo - pad..hi + pad
}

/// A log y range from the decade below the smallest positive finite value to the decade above
/// the largest, so that at least two decades are labelled.
fn decade_bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let Some((lo, hi)) = positive_range(values) else {
        return (1e-3, 1.0);
    };
    let lo = 10f64.powf((lo.log10() + 1e-9).floor());
    let hi = 10f64.powf((hi.log10() - 1e-9).ceil()).max(lo * 10.0);
    (lo, hi)
}

/// The smallest and largest positive finite values, if any.
fn positive_range(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold(None, |range, v| match range {
            None => Some((v, v)),
            Some((lo, hi)) => Some((f64::min(lo, v), f64::max(hi, v))),
        })
}

/// Every power of ten in `lo..=hi`.
fn decades(lo: f64, hi: f64) -> Vec<f64> {
    let first = (lo.log10() - 1e-9).ceil() as i32;
    let last = (hi.log10() + 1e-9).floor() as i32;
    (first..=last).map(|k| 10f64.powi(k)).collect()
}

/// A log y range covering the positive finite `values`, a bit wider on both ends.
fn log_bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let Some((lo, hi)) = positive_range(values) else {
        return (1e-3, 1.0);
    };
    if hi / lo < 4.0 {
        let mid = (lo * hi).sqrt();
        return (mid / 3.0, mid * 3.0);
    }
    (lo / 1.5, hi * 1.5)
}

fn integer_label(v: f64) -> String {
    if (v - v.round()).abs() < 1e-6 {
        format!("{}", v.round() as i64)
    } else {
        String::new()
    }
}

/// Compact scientific notation: 1e-3, 2.5e-2.
fn sci(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let s = format!("{v:.1e}");
    s.replace(".0e", "e")
}

/// Linear-axis labels without float noise.
fn plain(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e5).contains(&a) {
        return sci(v);
    }
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first epoch with the highest value; evaluations without the metric or with NaN are
    /// passed over.
    #[test]
    fn best_epoch_is_the_first_highest() {
        let record = |epoch, dev: Option<(&str, f64)>| EpochRecord {
            epoch,
            dev: dev.map(|(m, v)| [(m.to_string(), v)].into_iter().collect()),
            ..EpochRecord::default()
        };
        let history = [
            record(1, Some(("f1", 0.5))),
            record(2, None),
            record(3, Some(("f1", 0.8))),
            record(4, Some(("f1", f64::NAN))),
            record(5, Some(("f1", 0.8))),
            record(6, Some(("accuracy", 0.9))),
        ];
        assert_eq!(best_epoch(&history, "f1"), Some((3.0, 0.8)));
        assert_eq!(best_epoch(&history, "accuracy"), Some((6.0, 0.9)));
        assert_eq!(best_epoch(&history, "mcc"), None);
    }

    #[test]
    fn log_axes_span_and_label_every_decade() {
        assert_eq!(decades(1e-4, 1.0), [1e-4, 1e-3, 1e-2, 1e-1, 1.0]);
        assert_eq!(decade_bounds([2e-3, 8e-3].into_iter()), (1e-3, 1e-2));
        let (lo, hi) = decade_bounds([1.2e-3, 3e-2, 7e4].into_iter());
        assert_eq!((lo, hi), (1e-3, 1e5));
        assert_eq!(decades(lo, hi).len(), 9);
        assert_eq!(decade_bounds([1e-2].into_iter()), (1e-2, 1e-1));
    }

    #[test]
    fn kinds_from_hf_names() {
        let k = |n| ParamKind::of(n);
        assert_eq!(
            k("bert.encoder.layer.0.attention.self.query.weight"),
            ParamKind::Attention
        );
        assert_eq!(
            k("bert.encoder.layer.0.attention.output.dense.bias"),
            ParamKind::Attention
        );
        assert_eq!(
            k("bert.encoder.layer.0.attention.output.LayerNorm.weight"),
            ParamKind::LayerNorm
        );
        assert_eq!(
            k("bert.encoder.layer.5.intermediate.dense.weight"),
            ParamKind::Ffn
        );
        assert_eq!(k("bert.encoder.layer.5.output.dense.bias"), ParamKind::Ffn);
        assert_eq!(
            k("bert.encoder.layer.5.output.LayerNorm.bias"),
            ParamKind::LayerNorm
        );
        assert_eq!(
            k("bert.embeddings.word_embeddings.weight"),
            ParamKind::Embeddings
        );
        assert_eq!(k("bert.embeddings.LayerNorm.weight"), ParamKind::LayerNorm);
        assert_eq!(k("bert.pooler.dense.weight"), ParamKind::Other);
        assert_eq!(k("classifier.weight"), ParamKind::Head);
        assert_eq!(k("out.bias"), ParamKind::Head);
        assert_eq!(
            layer_index("bert.encoder.layer.11.output.dense.bias"),
            Some(11)
        );
        assert_eq!(layer_index("out.bias"), None);
    }

    #[test]
    fn labels() {
        assert_eq!(sci(0.001), "1e-3");
        assert_eq!(sci(0.025), "2.5e-2");
        assert_eq!(plain(0.25), "0.25");
        assert_eq!(plain(2.0), "2");
        assert_eq!(integer_label(3.0), "3");
        assert_eq!(integer_label(3.5), "");
    }

    #[test]
    fn draws_without_a_font() {
        let tmp = tempfile::tempdir().unwrap();
        // PAC_WGPU_TEST_PLOTS_DIR keeps the PNGs for a look (as in tests/cli/plots.rs).
        let kept =
            std::env::var_os("PAC_WGPU_TEST_PLOTS_DIR").map(|d| PathBuf::from(d).join("no-font"));
        let dir: &Path = kept.as_deref().unwrap_or(tmp.path());
        let history: Vec<EpochRecord> = (1..=4)
            .map(|e| EpochRecord {
                epoch: e,
                train_loss: 1.0 / e as f64,
                stage: Some(1),
                loss2: Some(2.0),
                kl: Some(e as f64),
                sigma_encoder: Some(1e-3),
                dev: Some([("accuracy".to_string(), 0.5)].into()),
                ..EpochRecord::default()
            })
            .collect();
        history_plots(dir, &history, Some("accuracy"), false).unwrap();
        let sigma = dir.join("plots/sigma.png");
        let layers = vec![
            (
                "bert.encoder.layer.0.attention.self.query.weight".to_string(),
                1e-3,
            ),
            ("out.weight".to_string(), 1e-2),
        ];
        sigma_plot(&sigma, &layers, false).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(dir.join("plots"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["dev.png", "kl.png", "loss.png", "noise.png", "sigma.png"]
        );
        for name in names {
            let image = image::open(dir.join("plots").join(&name))
                .unwrap()
                .to_rgb8();
            let colors: std::collections::HashSet<[u8; 3]> = image.pixels().map(|p| p.0).collect();
            assert!(colors.len() > 2, "{name}: blank");
        }
    }
}
