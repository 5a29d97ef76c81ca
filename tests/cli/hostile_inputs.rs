//! Hostile input through the real binary: every case must end with a non-zero exit and one
//! line `error: ...` naming the file or flag at fault, with no panic, no backtrace, and no new
//! or changed file in the output folder.

use crate::common;

use std::path::{Path, PathBuf};

use common::{binary, run_ok};

/// A good tiny model, a good toy SST-2 and a finished one-epoch run, under a temporary folder.
struct Fixture {
    tmp: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let f = Fixture { tmp };
        common::tiny::write_model(&f.model(), 2, |_| {});
        common::tiny::write_toy_sst2(&f.glue());
        let mut first = binary();
        first.args(f.train_args(&f.model(), &f.glue(), &f.finished_run()));
        run_ok(&mut first);
        f
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }
    fn model(&self) -> PathBuf {
        self.path("model")
    }
    fn glue(&self) -> PathBuf {
        self.path("glue")
    }
    fn finished_run(&self) -> PathBuf {
        self.path("finished")
    }

    /// A one-epoch vanilla run of the toy SST-2 on the CPU device.
    fn train_args(&self, model: &Path, glue: &Path, out: &Path) -> Vec<String> {
        let mut args: Vec<String> = [
            "train",
            "--task",
            "sst2",
            "--method",
            "vanilla",
            "--device",
            "cpu",
            "--quiet",
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--train-size",
            "0",
        ]
        .map(String::from)
        .to_vec();
        for (flag, path) in [
            ("--model", model),
            ("--data-dir", glue),
            ("--output-dir", out),
        ] {
            args.push(flag.into());
            args.push(path.display().to_string());
        }
        args
    }

    /// A copy of the good model folder with `edit` applied to it.
    fn model_with(&self, case: &str, edit: impl FnOnce(&Path)) -> PathBuf {
        let dir = self.path(&format!("{case}-model"));
        copy_dir(&self.model(), &dir);
        edit(&dir);
        dir
    }

    /// A copy of the good GLUE folder whose SST-2 `file` holds `contents`.
    fn glue_with(&self, case: &str, file: &str, contents: &[u8]) -> PathBuf {
        let dir = self.path(&format!("{case}-glue"));
        copy_dir(&self.glue(), &dir);
        std::fs::write(dir.join("SST-2").join(file), contents).unwrap();
        dir
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Every file under `dir` with its bytes, sorted; empty when `dir` does not exist.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    if dir.is_dir() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files.push((path.clone(), Vec::new()));
                files.extend(snapshot(&path));
            } else {
                files.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    files.sort();
    files
}

/// One hostile case: the arguments, the output folder they name, and what the error must say.
struct Case {
    name: &'static str,
    args: Vec<String>,
    out: PathBuf,
    env: Vec<(&'static str, String)>,
    expect: Vec<String>,
}

fn assert_all_pass(cases: &[Case]) {
    let failures: Vec<String> = cases.iter().filter_map(|c| run_case(c).err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

fn run_case(case: &Case) -> Result<(), String> {
    let existed = case.out.exists();
    let before = snapshot(&case.out);
    // Mesa's EGL probe prints a line of its own when XDG_RUNTIME_DIR is unset (CI runs so).
    let output = binary()
        .args(&case.args)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .envs(case.env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    eprintln!("{:<40} {}", case.name, stderr.trim());
    let mut problems = Vec::new();
    if output.status.success() {
        problems.push("exited 0".to_string());
    }
    let lines: Vec<&str> = stderr.lines().collect();
    if lines.len() != 1 || !lines[0].starts_with("error: ") {
        problems.push("stderr is not one `error:` line".into());
    }
    for word in ["panicked", "backtrace", "RUST_BACKTRACE"] {
        if stderr.contains(word) {
            problems.push(format!("stderr mentions {word}"));
        }
    }
    for needle in &case.expect {
        if !stderr.contains(needle.as_str()) {
            problems.push(format!("the error does not name {needle:?}"));
        }
    }
    if case.out.exists() != existed || snapshot(&case.out) != before {
        problems.push("the output folder changed".into());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}\n    stderr: {}",
            case.name,
            problems.join("; "),
            stderr.trim()
        ))
    }
}

#[test]
fn hostile_inputs_fail_cleanly_with_one_line_and_leave_the_output_folder_alone() {
    let f = Fixture::new();
    let good_model = f.model();
    let good_glue = f.glue();
    let mut cases = Vec::new();
    let mut add = |name: &'static str, args: Vec<String>, out: PathBuf, expect: &[&str]| {
        cases.push(Case {
            name,
            args,
            out,
            env: Vec::new(),
            expect: expect.iter().map(|s| s.to_string()).collect(),
        });
    };
    let out = |name: &str| f.path(&format!("{name}-out"));
    let header = "sentence\tlabel\n";

    // GLUE files.
    let glue_cases: [(&'static str, &str, Vec<u8>, &[&str]); 8] = [
        (
            "too few columns",
            "train.tsv",
            format!("{header}the cat sat\n").into(),
            &["train.tsv:2"],
        ),
        (
            "too many columns",
            "train.tsv",
            format!("{header}the cat\t1\tx\n").into(),
            &["train.tsv:2"],
        ),
        (
            "non-numeric label",
            "train.tsv",
            format!("{header}the cat\tgood\n").into(),
            &["train.tsv:2", "good"],
        ),
        (
            "out-of-range label",
            "train.tsv",
            format!("{header}the cat\t7\n").into(),
            &["train.tsv:2", "7"],
        ),
        ("empty file", "train.tsv", Vec::new(), &["train.tsv"]),
        ("header only", "train.tsv", header.into(), &["train.tsv"]),
        (
            "invalid UTF-8",
            "train.tsv",
            [header.as_bytes(), b"the \xff cat\t1\n"].concat(),
            &["train.tsv:2", "UTF-8"],
        ),
        (
            "label in dev",
            "dev.tsv",
            format!("{header}a dog\t-1\n").into(),
            &["dev.tsv:2"],
        ),
    ];
    for (name, file, contents, expect) in glue_cases {
        let glue = f.glue_with(name, file, &contents);
        add(
            name,
            f.train_args(&good_model, &glue, &out(name)),
            out(name),
            expect,
        );
    }
    let glue = f.path("dir-glue");
    copy_dir(&good_glue, &glue);
    std::fs::remove_file(glue.join("SST-2/train.tsv")).unwrap();
    std::fs::create_dir(glue.join("SST-2/train.tsv")).unwrap();
    add(
        "a folder where a file should be",
        f.train_args(&good_model, &glue, &out("dir")),
        out("dir"),
        &["train.tsv", "found a folder"],
    );
    let glue = f.path("nodev-glue");
    copy_dir(&good_glue, &glue);
    std::fs::remove_file(glue.join("SST-2/dev.tsv")).unwrap();
    add(
        "missing dev file",
        f.train_args(&good_model, &glue, &out("nodev")),
        out("nodev"),
        &["dev.tsv"],
    );
    let mrpc = f.path("mrpc-glue");
    std::fs::create_dir_all(mrpc.join("MRPC")).unwrap();
    let mrpc_rows =
        "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\nyes\t1\t2\tthe cat sat\ta cat sat\n";
    for split in ["train.tsv", "dev.tsv"] {
        std::fs::write(mrpc.join("MRPC").join(split), mrpc_rows).unwrap();
    }
    let mut args = f.train_args(&good_model, &mrpc, &out("mrpc"));
    args[2] = "mrpc".into();
    add(
        "MRPC label not 0/1",
        args,
        out("mrpc"),
        &["MRPC/train.tsv:2", "yes"],
    );

    // Users' own files.
    let own = f.path("own");
    std::fs::create_dir_all(&own).unwrap();
    std::fs::write(
        own.join("train.jsonl"),
        "{\"sentence\": \"the cat\", \"label\": 1}\n{\"sentence\": \"a dog\"}\n",
    )
    .unwrap();
    std::fs::write(
        own.join("good.jsonl"),
        "{\"text\": \"the cat\", \"label\": 1}\n",
    )
    .unwrap();
    std::fs::write(
        own.join("bad.jsonl"),
        "{\"sentence\": \"the cat\", \"label\": 1\n",
    )
    .unwrap();
    std::fs::write(own.join("dev.csv"), "text,label\nthe cat,1\n").unwrap();
    std::fs::write(own.join("phrases.csv"), "phrase,label\nthe cat,1\n").unwrap();
    for (name, train, dev, extra, expect) in [
        (
            "JSONL row without label",
            "train.jsonl",
            "dev.csv",
            vec![],
            vec!["train.jsonl:2", "label"],
        ),
        (
            "JSONL line that is not JSON",
            "bad.jsonl",
            "dev.csv",
            vec![],
            vec!["bad.jsonl:1"],
        ),
        (
            "CSV without the named column",
            "good.jsonl",
            "phrases.csv",
            vec!["--text-a-column", "text", "--label-column", "label"],
            vec!["phrases.csv", "text"],
        ),
    ] {
        let o = out(name);
        let mut args = f.train_args(&good_model, &good_glue, &o);
        args.extend([
            "--train-file".to_string(),
            own.join(train).display().to_string(),
        ]);
        args.extend([
            "--dev-file".to_string(),
            own.join(dev).display().to_string(),
        ]);
        args.extend(extra.iter().map(|s| s.to_string()));
        add(name, args, o, &expect);
    }

    // Model folders.
    let config = |edit: fn(&mut serde_json::Value)| {
        move |dir: &Path| {
            let path = dir.join("config.json");
            let mut json: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            edit(&mut json);
            std::fs::write(path, json.to_string()).unwrap();
        }
    };
    // (case, how it breaks a copy of the model folder, what the error must say)
    type ModelCase<'a> = (&'static str, Box<dyn FnOnce(&Path)>, Vec<&'a str>);
    let model_cases: Vec<ModelCase> = vec![
        (
            "config without hidden_size",
            Box::new(config(|j| {
                j.as_object_mut().unwrap().remove("hidden_size");
            })),
            vec!["config.json", "hidden_size"],
        ),
        (
            "config with 0 layers",
            Box::new(config(|j| j["num_hidden_layers"] = 0.into())),
            vec!["config.json", "num_hidden_layers"],
        ),
        (
            "hidden size not divisible by heads",
            Box::new(config(|j| j["num_attention_heads"] = 5.into())),
            vec!["config.json", "num_attention_heads"],
        ),
        (
            "config that is not JSON",
            Box::new(|d: &Path| {
                std::fs::write(d.join("config.json"), "{ hidden_size: 32").unwrap()
            }),
            vec!["config.json"],
        ),
        (
            "truncated safetensors header",
            Box::new(|d: &Path| {
                let bytes = std::fs::read(d.join("model.safetensors")).unwrap();
                std::fs::write(d.join("model.safetensors"), &bytes[..40]).unwrap();
            }),
            vec!["model.safetensors"],
        ),
        (
            "tensor of the wrong dtype",
            Box::new(|d: &Path| {
                rewrite_tensors(d, |name, dtype, _| {
                    if name == "pooler.dense.bias" || name.ends_with("word_embeddings.weight") {
                        *dtype = "I32"
                    }
                })
            }),
            vec!["model.safetensors", "word_embeddings"],
        ),
        (
            "missing tensor",
            Box::new(|d: &Path| {
                rewrite_tensors(d, |name, _, shape| {
                    if name == "encoder.layer.1.output.dense.weight" {
                        shape.clear()
                    }
                })
            }),
            vec!["model.safetensors", "encoder.layer.1.output.dense.weight"],
        ),
        (
            "mis-shaped tensor",
            Box::new(|d: &Path| {
                rewrite_tensors(d, |name, _, shape| {
                    if name == "encoder.layer.0.attention.self.query.bias" {
                        shape[0] = 16
                    }
                })
            }),
            vec![
                "model.safetensors",
                "encoder.layer.0.attention.self.query.bias",
            ],
        ),
        (
            "tokenizer.json that does not parse",
            Box::new(|d: &Path| {
                std::fs::write(
                    d.join("tokenizer.json"),
                    "{\"version\": \"1.0\", \"model\": 3}",
                )
                .unwrap()
            }),
            vec!["tokenizer.json"],
        ),
    ];
    for (name, edit, expect) in model_cases {
        let model = f.model_with(name, edit);
        add(
            name,
            f.train_args(&model, &good_glue, &out(name)),
            out(name),
            &expect,
        );
    }
    let missing = f.path("no-such-model");
    add(
        "model folder that does not exist",
        f.train_args(&missing, &good_glue, &out("nomodel")),
        out("nomodel"),
        &["no-such-model"],
    );

    // Flags out of range.
    for (name, flags, expect) in [
        ("negative epochs", vec!["--epochs", "-1"], "--epochs"),
        ("zero epochs", vec!["--epochs", "0"], "--epochs"),
        (
            "stage 1 longer than the run",
            vec!["--method", "pac", "--stage1-epochs", "5"],
            "--stage1-epochs",
        ),
        ("batch size 0", vec!["--batch-size", "0"], "--batch-size"),
        (
            "gamma 0",
            vec!["--method", "pac", "--gamma", "0"],
            "--gamma",
        ),
        (
            "negative gamma",
            vec!["--method", "pac", "--gamma", "-2"],
            "--gamma",
        ),
        (
            "no prior models",
            vec!["--method", "pac", "--prior-models", "0"],
            "--prior-models",
        ),
        ("unknown task", vec!["--task", "glue9"], "glue9"),
        ("unknown device index", vec!["--device", "7"], "--device 7"),
        (
            "negative learning rate",
            vec!["--lr-encoder", "-0.001"],
            "--lr-encoder",
        ),
        (
            "warm-up ratio above 1",
            vec!["--warmup-ratio", "1.5"],
            "--warmup-ratio",
        ),
        (
            "more micro-batches than examples",
            vec!["--grad-accum", "8"],
            "--grad-accum",
        ),
        (
            "PGD without a noise std",
            vec!["--method", "pgd"],
            "--noise-std",
        ),
        (
            "unknown --on-nonfinite",
            vec!["--on-nonfinite", "ignore"],
            "--on-nonfinite",
        ),
    ] {
        let o = out(name);
        let mut args = f.train_args(&good_model, &good_glue, &o);
        // Later flags replace earlier ones: drop the fixture's value of each flag given.
        for pair in flags.chunks(2) {
            if let Some(i) = args.iter().position(|a| a == pair[0]) {
                args.drain(i..i + 2);
            }
            args.extend(pair.iter().map(|s| s.to_string()));
        }
        add(name, args, o, &[expect]);
    }

    // Output folders and resuming.
    let blocker = f.path("a-file");
    std::fs::write(&blocker, "not a folder").unwrap();
    let under_file = blocker.join("run");
    add(
        "output folder under a file",
        f.train_args(&good_model, &good_glue, &under_file),
        under_file.clone(),
        &["--output-dir", "a-file"],
    );
    let busy = f.path("busy");
    std::fs::create_dir_all(&busy).unwrap();
    std::fs::write(busy.join("notes.txt"), "mine").unwrap();
    add(
        "non-empty output folder",
        f.train_args(&good_model, &good_glue, &busy),
        busy.clone(),
        &["--output-dir", "--resume", "--overwrite"],
    );
    let resume = |out: &Path, extra: &[&str]| {
        let command = common::resume_command(out);
        let args = command.get_args().map(|a| a.to_string_lossy().into_owned());
        args.chain(extra.iter().map(|s| s.to_string()))
            .collect::<Vec<String>>()
    };
    let no_checkpoint = f.path("no-checkpoint");
    copy_dir(&f.finished_run(), &no_checkpoint);
    std::fs::remove_dir_all(no_checkpoint.join("checkpoints")).unwrap();
    add(
        "--resume without a checkpoint",
        resume(&no_checkpoint, &[]),
        no_checkpoint.clone(),
        &["--resume", "no checkpoint"],
    );
    let not_a_run = f.path("not-a-run");
    std::fs::create_dir_all(&not_a_run).unwrap();
    std::fs::write(not_a_run.join("notes.txt"), "mine").unwrap();
    add(
        "--resume on a folder that is not a run",
        resume(&not_a_run, &["--task", "sst2"]),
        not_a_run.clone(),
        &["--resume", "run.json"],
    );
    let other_task = f.path("other-task");
    copy_dir(&f.finished_run(), &other_task);
    add(
        "--resume from another task",
        resume(&other_task, &["--task", "cola"]),
        other_task.clone(),
        &["--resume", "sst2", "cola"],
    );
    let other_model = f.path("other-model");
    copy_dir(&f.finished_run(), &other_model);
    add(
        "--resume from another model",
        resume(&other_model, &["--model", "bert-base-uncased"]),
        other_model.clone(),
        &["--resume", "bert-base-uncased"],
    );
    let broken_config = f.path("broken-run.json");
    std::fs::write(
        &broken_config,
        "{\"task\": \"sst2\",\n \"epochs\": \"many\"}",
    )
    .unwrap();
    add(
        "--config that is not a run.json",
        vec![
            "train".into(),
            "--config".into(),
            broken_config.display().to_string(),
            "--output-dir".into(),
            out("config").display().to_string(),
        ],
        out("config"),
        &["broken-run.json:2"],
    );

    // No GPU at all: no Vulkan driver and no GL.
    cases.push(Case {
        name: "no wgpu adapter",
        args: {
            let mut args = f.train_args(&good_model, &good_glue, &out("noadapter"));
            let i = args.iter().position(|a| a == "cpu").unwrap();
            args[i] = "0".into();
            args
        },
        out: out("noadapter"),
        env: vec![
            ("VK_ICD_FILENAMES", "/nonexistent/icd.json".into()),
            (
                "__EGL_VENDOR_LIBRARY_FILENAMES",
                "/nonexistent/egl.json".into(),
            ),
        ],
        expect: vec![
            "--device 0".into(),
            "no wgpu adapter".into(),
            "--device cpu".into(),
        ],
    });

    assert!(cases.len() >= 30, "only {} cases", cases.len());
    assert_all_pass(&cases);
}

/// Rewrites model.safetensors, letting `edit` change each tensor's dtype name and shape (an
/// emptied shape drops the tensor). The data is kept, so a changed shape or dtype lies.
fn rewrite_tensors(dir: &Path, edit: impl Fn(&str, &mut &'static str, &mut Vec<usize>)) {
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    let mut names: Vec<String> = file.names().into_iter().map(String::from).collect();
    names.sort();
    for name in names {
        let view = file.tensor(&name).unwrap();
        let mut dtype: &'static str = "F32";
        let mut shape = view.shape().to_vec();
        edit(&name, &mut dtype, &mut shape);
        if shape.is_empty() {
            continue;
        }
        let start = data.len();
        let size = shape.iter().product::<usize>() * 4;
        data.extend((0..size).map(|i| view.data()[i % view.data().len()]));
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    let mut text = serde_json::Value::Object(header).to_string();
    while !text.len().is_multiple_of(8) {
        text.push(' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&data);
    std::fs::write(path, out).unwrap();
}

/// The second round: inputs that would make a careless loader allocate, hang or guess.
#[test]
fn hostile_inputs_round_two() {
    let f = Fixture::new();
    let (good_model, good_glue) = (f.model(), f.glue());
    let out = |name: &str| f.path(&format!("{name}-out"));
    let mut cases = Vec::new();
    let mut add = |name: &'static str, args: Vec<String>, expect: &[&str]| {
        cases.push(Case {
            name,
            out: out(name),
            args,
            env: Vec::new(),
            expect: expect.iter().map(|s| s.to_string()).collect(),
        });
    };

    let huge = f.model_with("huge hidden size", |d| {
        let path = d.join("config.json");
        let mut config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        config["hidden_size"] = 1_048_576.into();
        config["intermediate_size"] = 4_194_304.into();
        std::fs::write(&path, config.to_string()).unwrap();
    });
    add(
        "huge hidden size",
        f.train_args(&huge, &good_glue, &out("huge hidden size")),
        &["config.json", "hidden_size", "model.safetensors"],
    );
    let overlong = f.model_with("header beyond the file", |d| {
        let path = d.join("model.safetensors");
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    });
    add(
        "header beyond the file",
        f.train_args(&overlong, &good_glue, &out("header beyond the file")),
        &["model.safetensors"],
    );
    let no_cls = f.model_with("vocabulary without [CLS]", |d| {
        let path = d.join("vocab.txt");
        let vocab = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, vocab.replace("[CLS]\n", "[XLS]\n")).unwrap();
    });
    add(
        "vocabulary without [CLS]",
        f.train_args(&no_cls, &good_glue, &out("vocabulary without [CLS]")),
        &["vocab.txt", "[CLS]"],
    );
    let max_length = {
        let mut args = f.train_args(&good_model, &good_glue, &out("max-length above positions"));
        args.extend(["--max-length".to_string(), "512".to_string()]);
        args
    };
    add(
        "max-length above positions",
        max_length,
        &["--max-length 512", "max_position_embeddings"],
    );
    let long_row = format!("sentence\tlabel\n{}\t1\n", "the cat ".repeat(1_310_720));
    let glue = f.glue_with("10 MB row", "train.tsv", long_row.as_bytes());
    add(
        "10 MB row",
        f.train_args(&good_model, &glue, &out("10 MB row")),
        &["train.tsv:2"],
    );
    let csv = f.path("labels.csv");
    std::fs::write(&csv, "sentence,label\nthe cat,1\na dog,neutral\n").unwrap();
    let mut args = f.train_args(&good_model, &good_glue, &out("CSV label outside the task"));
    args.extend(["--train-file".into(), csv.display().to_string()]);
    add(
        "CSV label outside the task",
        args,
        &["labels.csv:3", "neutral"],
    );
    let mut args = f.train_args(&good_model, &good_glue, &out("device 99"));
    let i = args.iter().position(|a| a == "cpu").unwrap();
    args[i] = "99".into();
    add("device 99", args, &["--device 99"]);

    assert_all_pass(&cases);
}
