//! plots/: the learning-curve and σ-per-tensor PNGs, drawn from synthetic history and layer lists.
//!
//! Set PAC_WGPU_TEST_PLOTS_DIR to keep the PNGs (one subfolder per test) for a look.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use pac_wgpu::report::plots::{
    CURVE_SIZE, LEGEND_WIDTH, Panel, report_plot_size, sigma_plot_size, write_history_plots,
    write_report_plot, write_sigma_plot,
};
use pac_wgpu::run::EpochRecord;
use serde_json::{Value, json};

/// A history record with the keys given; the keys every record has that are not given are 0
/// (train_loss: null, i.e. NaN).
fn record(keys: Value) -> EpochRecord {
    let mut full = json!({"epoch": 0, "step": 0, "train_loss": null, "lr_encoder": 0.0,
        "lr_head": 0.0, "epoch_seconds": 0.0, "examples_per_s": 0.0});
    for (key, value) in keys.as_object().expect("an object") {
        full[key] = value.clone();
    }
    serde_json::from_value(full).expect("a history record")
}

/// A scratch folder: a fresh temp dir, or `$PAC_WGPU_TEST_PLOTS_DIR/<name>` when set.
struct Scratch {
    _tmp: Option<tempfile::TempDir>,
    path: PathBuf,
}

fn scratch(name: &str) -> Scratch {
    match std::env::var_os("PAC_WGPU_TEST_PLOTS_DIR") {
        Some(root) => {
            let path = PathBuf::from(root).join(name);
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            Scratch { _tmp: None, path }
        }
        None => {
            let tmp = tempfile::tempdir().unwrap();
            let path = tmp.path().to_path_buf();
            Scratch {
                _tmp: Some(tmp),
                path,
            }
        }
    }
}

/// Decodes `path` as PNG, checks its size and that it is not blank; returns the number of
/// distinct colors.
fn check_png(path: &Path, size: (u32, u32)) -> usize {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        &bytes[..8],
        b"\x89PNG\r\n\x1a\n",
        "{}: not a PNG",
        path.display()
    );
    let image = image::load_from_memory_with_format(&bytes, image::ImageFormat::Png)
        .unwrap_or_else(|e| panic!("{}: cannot decode: {e}", path.display()))
        .to_rgb8();
    assert_eq!(image.dimensions(), size, "{}", path.display());
    let colors: HashSet<[u8; 3]> = image.pixels().map(|p| p.0).collect();
    assert!(
        colors.len() > 3,
        "{}: looks blank ({} colors)",
        path.display(),
        colors.len()
    );
    colors.len()
}

/// Whether any pixel is close to `rgb` (the curve/bar colors are distinctive).
fn has_color(path: &Path, rgb: [u8; 3]) -> bool {
    let image = image::open(path).unwrap().to_rgb8();
    image.pixels().any(|p| {
        p.0.iter()
            .zip(rgb)
            .all(|(&a, b)| (a as i32 - b as i32).abs() <= 6)
    })
}

fn assert_no_temp_files(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            !name.contains(".part") && !name.contains(".tmp"),
            "{}: temporary file {name} left behind",
            dir.display()
        );
    }
}

const BLUE: [u8; 3] = [31, 119, 180];
const ORANGE: [u8; 3] = [255, 127, 14];
const GREEN: [u8; 3] = [44, 160, 44];
const RED: [u8; 3] = [214, 39, 40];

#[test]
fn vanilla_history_gives_loss_and_dev_plots() {
    let s = scratch("vanilla");
    // Dev every other epoch (epoch 3 has none), one metric missing once.
    let history: Vec<EpochRecord> = (1..=10)
        .map(|e| {
            let mut r = json!({
                "epoch": e,
                "step": e * 4,
                "train_loss": 0.7 * (-(e as f64) / 4.0).exp() + 0.05,
                "lr_encoder": 5e-5,
                "epoch_seconds": 1.5,
            });
            if e != 3 {
                let acc = 0.5 + 0.03 * e as f64;
                r["dev"] = if e == 5 {
                    json!({"accuracy": acc})
                } else {
                    json!({"accuracy": acc, "f1": acc + 0.1})
                };
            }
            record(r)
        })
        .collect();
    write_history_plots(&s.path, &history, None).unwrap();
    let plots = s.path.join("plots");
    assert_eq!(crate::common::file_names(&plots), ["dev.png", "loss.png"]);
    check_png(&plots.join("loss.png"), CURVE_SIZE);
    check_png(&plots.join("dev.png"), CURVE_SIZE);
    assert!(has_color(&plots.join("loss.png"), BLUE), "no loss curve");
    assert!(has_color(&plots.join("dev.png"), BLUE), "no accuracy curve");
    assert!(has_color(&plots.join("dev.png"), ORANGE), "no f1 curve");
    assert_no_temp_files(&plots);

    // Rewriting over existing plots (every epoch does this) works and leaves no temp file.
    write_history_plots(&s.path, &history[..4], None).unwrap();
    check_png(&plots.join("loss.png"), CURVE_SIZE);
    assert_no_temp_files(&plots);
}

/// A PAC history: stage 1 = epochs 1..=6 (loss2, KL, σ logged), stage 2 = 7..=10.
fn pac_history() -> Vec<EpochRecord> {
    (1..=10)
        .map(|e| {
            let t = e as f64;
            let loss1 = 0.9 * (-t / 5.0).exp() + 0.2;
            let mut r = json!({
                "epoch": e,
                "train_loss": loss1,
                "stage": if e <= 6 { 1 } else { 2 },
                "dev": {"f1": 0.6 + 0.02 * t, "accuracy": 0.55 + 0.02 * t},
            });
            if e <= 6 {
                r["loss2"] = json!(3.0 - 0.1 * t);
                r["kl"] = json!(40.0 * t);
                r["k_hat"] = json!(0.8);
                r["gamma"] = json!(10.0);
                r["sigma_encoder"] = json!(1.2e-3 * (1.0 + 0.3 * t));
                r["sigma_head"] = json!(3e-2 / (1.0 + 0.5 * t));
                r["prior_std"] = json!(1.2e-3 * (1.0 + 0.1 * t));
            }
            record(r)
        })
        .collect()
}

#[test]
fn pac_history_gives_noise_and_kl_plots() {
    let s = scratch("pac");
    write_history_plots(&s.path, &pac_history(), None).unwrap();
    let plots = s.path.join("plots");
    assert_eq!(
        crate::common::file_names(&plots),
        ["dev.png", "kl.png", "loss.png", "noise.png"]
    );
    for name in ["dev.png", "kl.png", "loss.png", "noise.png"] {
        check_png(&plots.join(name), CURVE_SIZE);
    }
    // loss2 (right axis) is the second color.
    assert!(has_color(&plots.join("loss.png"), ORANGE), "no loss2 curve");
    assert!(
        has_color(&plots.join("noise.png"), GREEN),
        "no prior std curve"
    );
    assert!(has_color(&plots.join("kl.png"), BLUE), "no KL curve");
    assert_no_temp_files(&plots);
}

#[test]
fn degenerate_histories_do_not_panic() {
    // Empty history: an empty loss plot.
    let s = scratch("empty");
    write_history_plots(&s.path, &[], None).unwrap();
    assert_eq!(
        crate::common::file_names(&s.path.join("plots")),
        ["loss.png"]
    );
    let (w, h) = CURVE_SIZE;
    let bytes = std::fs::read(s.path.join("plots/loss.png")).unwrap();
    let image = image::load_from_memory(&bytes).unwrap();
    assert_eq!((image.width(), image.height()), (w, h));

    // NaN (serialised as null), non-positive σ, a single finite value, all-null series.
    let s = scratch("nan");
    let history = vec![
        record(
            json!({"epoch": 1, "train_loss": f64::NAN, "dev": {"accuracy": null},
               "stage": 1, "kl": null, "sigma_encoder": 0.0, "sigma_head": -1.0}),
        ),
        record(json!({"epoch": 2, "train_loss": 0.5, "dev": {}, "loss2": null})),
    ];
    write_history_plots(&s.path, &history, None).unwrap();
    let plots = s.path.join("plots");
    assert_eq!(
        crate::common::file_names(&plots),
        ["dev.png", "kl.png", "loss.png", "noise.png"]
    );
    for name in crate::common::file_names(&plots) {
        let image = image::open(plots.join(&name)).unwrap();
        assert_eq!((image.width(), image.height()), (w, h), "{name}");
    }
    assert_no_temp_files(&plots);

    // One epoch only.
    let s = scratch("one");
    write_history_plots(
        &s.path,
        &[record(
            json!({"epoch": 1, "train_loss": 0.69, "dev": {"mcc": 0.1}}),
        )],
        Some("mcc"),
    )
    .unwrap();
    check_png(&s.path.join("plots/loss.png"), CURVE_SIZE);
    check_png(&s.path.join("plots/dev.png"), CURVE_SIZE);
}

/// The trainable tensors of a MiniLM-L6 classifier in model order, as the training loop names
/// them (HF spelling), with a σ per tensor that differs by type.
fn minilm_layers() -> Vec<(String, f64)> {
    let mut layers = Vec::new();
    for l in 0..6 {
        let p = format!("bert.encoder.layer.{l}");
        let grow = 1.0 + 0.15 * l as f64;
        for (suffix, sigma) in [
            ("attention.self.query.weight", 2.0e-3),
            ("attention.self.query.bias", 1.0e-3),
            ("attention.self.key.weight", 2.1e-3),
            ("attention.self.key.bias", 1.0e-3),
            ("attention.self.value.weight", 1.8e-3),
            ("attention.self.value.bias", 0.9e-3),
            ("attention.output.dense.weight", 1.7e-3),
            ("attention.output.dense.bias", 0.8e-3),
            ("attention.output.LayerNorm.weight", 4.0e-4),
            ("attention.output.LayerNorm.bias", 3.0e-4),
            ("intermediate.dense.weight", 3.0e-3),
            ("intermediate.dense.bias", 1.5e-3),
            ("output.dense.weight", 2.8e-3),
            ("output.dense.bias", 1.4e-3),
            ("output.LayerNorm.weight", 4.5e-4),
            ("output.LayerNorm.bias", 3.5e-4),
        ] {
            layers.push((format!("{p}.{suffix}"), sigma * grow));
        }
    }
    layers.push(("out.weight".into(), 2.5e-2));
    layers.push(("out.bias".into(), 1.0e-2));
    layers
}

#[test]
fn sigma_plot_per_tensor() {
    let s = scratch("sigma");
    let layers = minilm_layers();
    assert_eq!(layers.len(), 98);
    let path = s.path.join("plots").join("sigma.png");
    write_sigma_plot(&path, &layers).unwrap();
    check_png(&path, sigma_plot_size(98));
    for (color, what) in [
        (BLUE, "attention"),
        (ORANGE, "FFN"),
        (GREEN, "LayerNorm"),
        (RED, "head"),
    ] {
        assert!(has_color(&path, color), "no {what} bars");
    }
    assert_no_temp_files(&s.path.join("plots"));

    // BERT-base size (194 tensors), with embeddings unfrozen: a wider plot.
    let mut big: Vec<(String, f64)> = vec![
        ("bert.embeddings.word_embeddings.weight".into(), 5e-4),
        ("bert.embeddings.position_embeddings.weight".into(), 5e-4),
        ("bert.embeddings.token_type_embeddings.weight".into(), 5e-4),
        ("bert.embeddings.LayerNorm.weight".into(), 2e-4),
        ("bert.embeddings.LayerNorm.bias".into(), 2e-4),
    ];
    for l in 0..12 {
        for (name, sigma) in minilm_layers().into_iter().take(16) {
            big.push((name.replace("layer.0.", &format!("layer.{l}.")), sigma));
        }
    }
    big.push(("classifier.weight".into(), 3e-2));
    big.push(("classifier.bias".into(), 1e-2));
    let path = s.path.join("sigma-base.png");
    write_sigma_plot(&path, &big).unwrap();
    check_png(&path, sigma_plot_size(big.len()));
    assert!(sigma_plot_size(big.len()).0 > sigma_plot_size(98).0);
    assert_no_temp_files(&s.path);
}

#[test]
fn sigma_plot_degenerate_inputs() {
    let s = scratch("sigma-degenerate");
    // Nothing to show: still a valid PNG.
    let path = s.path.join("empty.png");
    write_sigma_plot(&path, &[]).unwrap();
    let image = image::open(&path).unwrap();
    assert_eq!((image.width(), image.height()), sigma_plot_size(0));

    // Non-finite, zero and negative σ are skipped; the rest are drawn.
    let path = s.path.join("mixed.png");
    let layers = vec![
        (
            "bert.encoder.layer.0.attention.self.query.weight".into(),
            f64::NAN,
        ),
        ("bert.encoder.layer.0.attention.self.query.bias".into(), 0.0),
        (
            "bert.encoder.layer.0.intermediate.dense.weight".into(),
            -1.0,
        ),
        (
            "bert.encoder.layer.0.output.dense.weight".into(),
            f64::INFINITY,
        ),
        ("out.weight".into(), 1e-2),
    ];
    write_sigma_plot(&path, &layers).unwrap();
    check_png(&path, sigma_plot_size(layers.len()));
    assert!(
        has_color(&path, RED),
        "the one finite σ (head) is not drawn"
    );

    // All non-finite: no panic.
    let path = s.path.join("nan.png");
    write_sigma_plot(&path, &[("out.bias".into(), f64::NAN)]).unwrap();
    assert!(image::open(&path).is_ok());
    assert_no_temp_files(&s.path);
}

/// The bounding box (x0, y0, x1, y1) of the pixels of `image` in columns `columns` that `keep`
/// accepts.
fn bbox(
    image: &image::RgbImage,
    columns: std::ops::Range<u32>,
    keep: impl Fn([u8; 3]) -> bool,
) -> Option<(u32, u32, u32, u32)> {
    let mut b: Option<(u32, u32, u32, u32)> = None;
    for (x, y, p) in image.enumerate_pixels() {
        if columns.contains(&x) && keep(p.0) {
            let (x0, y0, x1, y1) = b.unwrap_or((x, y, x, y));
            b = Some((x0.min(x), y0.min(y), x1.max(x), y1.max(y)));
        }
    }
    b
}

fn near(a: [u8; 3], b: [u8; 3]) -> bool {
    a.iter()
        .zip(b)
        .all(|(&x, y)| (x as i32 - y as i32).abs() <= 6)
}

/// Every learning-curve plot of a PAC history has its data drawn and a legend box, and the box
/// lies beside the data (right of every curve pixel), not over it.
#[test]
fn legends_sit_beside_the_data() {
    let s = scratch("legends");
    write_history_plots(&s.path, &pac_history(), None).unwrap();
    let (w, _) = CURVE_SIZE;
    let strip = w - LEGEND_WIDTH;
    for name in ["dev.png", "kl.png", "loss.png", "noise.png"] {
        let path = s.path.join("plots").join(name);
        check_png(&path, CURVE_SIZE);
        let image = image::open(&path).unwrap().to_rgb8();
        let curve = |p: [u8; 3]| [BLUE, ORANGE, GREEN, RED].iter().any(|c| near(p, *c));
        let data = bbox(&image, 0..strip, curve).unwrap_or_else(|| panic!("{name}: no curve"));
        let legend = bbox(&image, strip..w, |p| p.iter().any(|&c| c < 245))
            .unwrap_or_else(|| panic!("{name}: no legend beside the chart"));
        assert!(
            data.2 < legend.0,
            "{name}: curves reach x = {} inside the legend box from x = {}",
            data.2,
            legend.0
        );
        assert!(
            bbox(&image, legend.0..w, curve).is_some(),
            "{name}: the legend shows no series color"
        );
    }
}

/// report.png: one panel per task, every method's color drawn, not blank.
#[test]
fn report_plot_shows_every_method() {
    let s = scratch("report");
    let panel = |title: &str| Panel {
        title: title.into(),
        y_desc: "dev f1".into(),
        methods: vec![
            ("pac".into(), vec![0.71, 0.74, 0.69]),
            ("vanilla".into(), vec![0.66, 0.70, 0.61]),
            ("bitfit".into(), vec![0.62, 0.64, 0.60]),
        ],
    };
    let path = s.path.join("report.png");
    write_report_plot(&path, &[panel("mrpc"), panel("rte")]).unwrap();
    check_png(&path, report_plot_size(2));
    for color in [BLUE, ORANGE, GREEN] {
        assert!(has_color(&path, color), "no dots of {color:?}");
    }
    assert_no_temp_files(&s.path);
}
