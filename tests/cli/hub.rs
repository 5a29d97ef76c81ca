//! The first run a user makes, with the hub stood in for by a server on 127.0.0.1
//! (tests/common/hub.rs) and the real code pointed at it through `HF_ENDPOINT`: downloads into
//! a fresh HF cache (`HF_HOME`), offline reruns from it, and every way the network fails
//! ending in one line that says what to do, with no half file left in the cache as whole.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::error_line;
use common::hub::{COMMIT, Fault, Hub, files_under};
use common::parquet::write_pair_split;
use pac_wgpu::glue::{DataSource, Split, Task, hub::parquet_file};

const TOKEN: &str = "hf_StandInTokenThatMustNeverBeShown";

/// The binary with a fresh view of the hub: `home` as HF_HOME, no GLUE_DIR, no token.
fn pac_wgpu(hub: &Hub, home: &Path) -> Command {
    let mut cmd = common::binary();
    cmd.env("HF_ENDPOINT", &hub.endpoint)
        .env("HF_HOME", home)
        .env("HF_HUB_ETAG_TIMEOUT", "5")
        .env("HF_HUB_DOWNLOAD_TIMEOUT", "5")
        .env_remove("GLUE_DIR")
        .env_remove("HF_TOKEN")
        .env_remove("HF_HUB_OFFLINE");
    cmd
}

fn encode(hub: &Hub, home: &Path, model: &str) -> Command {
    let mut cmd = pac_wgpu(hub, home);
    cmd.args([
        "encode",
        "--device",
        "cpu",
        "--text-a",
        "the cat sat",
        "--model",
        model,
    ]);
    cmd
}

fn assert_ok(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    stderr
}

/// The snapshot folder of `repo` ("models--org--name") in the HF cache under `home`.
fn snapshot(home: &Path, repo: &str) -> PathBuf {
    home.join("hub").join(repo).join("snapshots").join(COMMIT)
}

fn tiny_model(dir: &Path) -> PathBuf {
    let model = dir.join("tiny-bert");
    common::tiny::write_model(&model, 7, |_| {});
    model
}

/// A toy MRPC's splits, as the hub's `nyu-mll/glue` parquet files.
fn serve_mrpc(hub: &Hub, glue: &Path, scratch: &Path) {
    let source = DataSource::new(Some(glue.to_path_buf()));
    for (split, rows) in [(Split::Train, 24), (Split::Dev, 12), (Split::Test, 12)] {
        let mut examples = source.load(&Task::Mrpc, split).unwrap().examples;
        examples.truncate(rows);
        let file = parquet_file(&Task::Mrpc, split).unwrap();
        let path = scratch.join(&file);
        write_pair_split(&path, &examples);
        hub.add_file(
            "datasets/nyu-mll/glue",
            &file,
            std::fs::read(&path).unwrap(),
        );
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn a_first_run_downloads_model_and_glue_into_the_hf_cache_and_reruns_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let glue = tmp.path().join("glue");
    common::tiny::write_toy_mrpc(&glue);
    let home = tmp.path().join("hf-home");
    let model = tiny_model(tmp.path());
    let hub = Hub::start();
    hub.add_folder("org/tiny-bert", &model);
    hub.gate("org/tiny-bert", TOKEN);
    serve_mrpc(&hub, &glue, tmp.path());

    let train = |out: &str| {
        let mut cmd = pac_wgpu(&hub, &home);
        cmd.args([
            "train",
            "--task",
            "mrpc",
            "--model",
            "org/tiny-bert",
            "--quiet",
        ])
        .args(["--method", "vanilla", "--epochs", "1", "--train-size", "0"])
        .args([
            "--device",
            "cpu",
            "--batch-size",
            "8",
            "--max-length",
            "32",
            "--output-dir",
        ])
        .arg(tmp.path().join(out));
        cmd
    };
    let first = train("first").env("HF_TOKEN", TOKEN).output().unwrap();
    let stderr = assert_ok(&first);

    // HF's cache layout, the files as served.
    let models = snapshot(&home, "models--org--tiny-bert");
    for file in ["config.json", "model.safetensors", "vocab.txt"] {
        assert_eq!(
            std::fs::read(models.join(file)).unwrap(),
            std::fs::read(model.join(file)).unwrap(),
            "{file}"
        );
    }
    let refs = home.join("hub/models--org--tiny-bert/refs/main");
    assert_eq!(std::fs::read_to_string(refs).unwrap(), COMMIT);
    let data = snapshot(&home, "datasets--nyu-mll--glue");
    for split in [Split::Train, Split::Dev] {
        let file = parquet_file(&Task::Mrpc, split).unwrap();
        assert!(data.join(&file).is_file(), "{file} not cached");
    }

    // The token went to the hub and nowhere else.
    let model_requests: Vec<_> = hub
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/org/tiny-bert/"))
        .collect();
    assert!(!model_requests.is_empty());
    for r in &model_requests {
        let auth = r.headers.get("authorization").map(String::as_str);
        assert_eq!(auth, Some(format!("Bearer {TOKEN}").as_str()), "{}", r.path);
    }
    assert!(!contains(&first.stdout, TOKEN) && !stderr.contains(TOKEN));
    for path in files_under(&tmp.path().join("first")) {
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            !contains(&bytes, TOKEN),
            "{} holds the token",
            path.display()
        );
    }

    // Offline, with the hub gone: everything comes from the cache.
    hub.stop();
    let served = hub.requests().len();
    let second = train("second").env("HF_HUB_OFFLINE", "1").output().unwrap();
    assert_ok(&second);
    assert_eq!(
        hub.requests().len(),
        served,
        "the offline run asked the hub"
    );
}

#[test]
fn refused_missing_and_failing_hubs_end_in_one_line_that_says_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("hf-home");
    let model = tiny_model(tmp.path());
    let hub = Hub::start();
    for repo in ["org/gated", "org/flaky"] {
        hub.add_folder(repo, &model);
    }
    hub.gate("org/gated", TOKEN);
    let pickle = tmp.path().join("pickle");
    std::fs::create_dir_all(&pickle).unwrap();
    for file in ["config.json", "vocab.txt"] {
        std::fs::copy(model.join(file), pickle.join(file)).unwrap();
    }
    std::fs::write(pickle.join("pytorch_model.bin"), b"PK\x03\x04 a pickle").unwrap();
    hub.add_folder("org/pickle", &pickle);

    let line = error_line(&encode(&hub, &home, "org/nothing").output().unwrap());
    assert!(
        line.contains("--model org/nothing") && line.contains("HTTP 401"),
        "{line}"
    );
    assert!(
        line.contains("HF_TOKEN") && line.contains("local folder"),
        "{line}"
    );

    let line = error_line(&encode(&hub, &home, "org/gated").output().unwrap());
    assert!(
        line.contains("HTTP 401") && line.contains("gated"),
        "{line}"
    );
    let with_token = encode(&hub, &home, "org/gated")
        .env("HF_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(!contains(&with_token.stdout, TOKEN));
    assert!(!assert_ok(&with_token).contains(TOKEN));

    hub.set_fault("org/flaky", "config.json", Some(Fault::Status(500)));
    let line = error_line(&encode(&hub, &home, "org/flaky").output().unwrap());
    assert!(
        line.contains("HTTP 500") && line.contains("retry"),
        "{line}"
    );
    hub.set_fault("org/flaky", "config.json", None);
    assert_ok(&encode(&hub, &home, "org/flaky").output().unwrap());

    let config_only = tmp.path().join("config-only");
    std::fs::create_dir_all(&config_only).unwrap();
    std::fs::copy(model.join("config.json"), config_only.join("config.json")).unwrap();
    hub.add_folder("org/config-only", &config_only);
    let line = error_line(&encode(&hub, &home, "org/config-only").output().unwrap());
    assert!(
        line.contains("model.safetensors is not on the hub (HTTP 404)"),
        "{line}"
    );

    let line = error_line(&encode(&hub, &home, "org/pickle").output().unwrap());
    assert!(
        line.contains("pytorch_model.bin") && line.contains("model.safetensors"),
        "{line}"
    );

    let file_home = tmp.path().join("not-a-folder");
    std::fs::write(&file_home, "").unwrap();
    let line = error_line(&encode(&hub, &file_home, "org/flaky").output().unwrap());
    assert!(
        line.contains("HF cache") && line.contains("HF_HOME"),
        "{line}"
    );

    let line = error_line(
        &encode(&hub, &tmp.path().join("empty"), "org/flaky")
            .env("HF_HUB_OFFLINE", "1")
            .output()
            .unwrap(),
    );
    assert!(line.contains("HF_HUB_OFFLINE"), "{line}");

    let endpoint = hub.endpoint.clone();
    hub.stop();
    let line = error_line(
        &encode(&hub, &tmp.path().join("h2"), "org/flaky")
            .output()
            .unwrap(),
    );
    assert!(
        line.contains(&format!("cannot reach the hub at {endpoint}")),
        "{line}"
    );
    // A name that does not resolve (the .invalid domain never does) is the same: no network,
    // not a broken download.
    let line = error_line(
        &encode(&hub, &tmp.path().join("h3"), "org/flaky")
            .env("HF_ENDPOINT", "http://pac-wgpu-hub.invalid")
            .output()
            .unwrap(),
    );
    assert!(
        line.contains("cannot reach the hub at http://pac-wgpu-hub.invalid")
            && line.contains("HF_HUB_OFFLINE=1"),
        "{line}"
    );
}

/// A download that breaks off, ends short or stalls fails, leaves nothing in the cache that
/// reads as whole, and the next run gets the whole file (resuming where it can).
#[test]
fn broken_short_and_stalled_downloads_never_leave_a_whole_looking_file() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("hf-home");
    let model = tiny_model(tmp.path());
    let weights = std::fs::read(model.join("model.safetensors")).unwrap();
    let hub = Hub::start();
    let cases = [
        ("org/cut", Fault::CloseMidBody, "broke off"),
        ("org/short", Fault::ShortWithoutLength, "bytes arrived"),
        ("org/stall", Fault::StallMidBody, "stalled: no data for 1 s"),
    ];
    for (repo, fault, expected) in cases {
        hub.add_folder(repo, &model);
        hub.set_fault(repo, "model.safetensors", Some(fault));
        let started = Instant::now();
        let out = encode(&hub, &home, repo)
            .env("HF_HUB_DOWNLOAD_TIMEOUT", "1")
            .output()
            .unwrap();
        let line = error_line(&out);
        assert!(line.contains(expected) && line.contains(repo), "{line}");
        assert!(started.elapsed() < Duration::from_secs(30), "{repo} hung");
        let folder = format!("models--{}", repo.replace('/', "--"));
        let cached = snapshot(&home, &folder).join("model.safetensors");
        assert!(
            !cached.exists(),
            "{repo}: a partial file is in the cache as whole"
        );

        hub.set_fault(repo, "model.safetensors", None);
        assert_ok(&encode(&hub, &home, repo).output().unwrap());
        assert_eq!(std::fs::read(&cached).unwrap(), weights, "{repo}");
    }
    // The download that broke off was resumed, not restarted.
    let resumed = hub.requests().into_iter().any(|r| {
        r.path.starts_with("/cdn/")
            && r.headers
                .get("range")
                .is_some_and(|v| v.starts_with("bytes=") && !v.starts_with("bytes=0-"))
    });
    assert!(resumed, "no download resumed from its .part file");

    hub.add_folder("org/silent", &model);
    hub.set_fault("org/silent", "config.json", Some(Fault::NoAnswer));
    let started = Instant::now();
    let out = encode(&hub, &home, "org/silent")
        .env("HF_HUB_ETAG_TIMEOUT", "1")
        .output()
        .unwrap();
    let line = error_line(&out);
    assert!(
        line.contains("stalled") && line.contains("HF_HUB_ETAG_TIMEOUT"),
        "{line}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "a silent hub hung the run"
    );
}

/// `HF_TOKEN` goes to the hub's own origin only: the CDN on another port gets the LFS files'
/// requests without it, and a redirect loop ends in one line instead of a hang.
#[test]
fn the_token_stays_with_the_hubs_host_and_a_redirect_loop_ends_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("hf-home");
    let model = tiny_model(tmp.path());
    let (hub, cdn) = (Hub::start(), Hub::start());
    for server in [&hub, &cdn] {
        server.add_folder("org/gated", &model);
    }
    hub.gate("org/gated", TOKEN);
    hub.use_cdn(&cdn.endpoint);
    let out = encode(&hub, &home, "org/gated")
        .env("HF_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert_ok(&out);
    let bearer = format!("Bearer {TOKEN}");
    let hub_requests = hub.requests();
    assert!(
        hub_requests
            .iter()
            .all(|r| r.headers.get("authorization") == Some(&bearer)),
        "a request to the hub went without the token"
    );
    let cdn_requests = cdn.requests();
    assert!(
        cdn_requests.iter().any(|r| r.path.starts_with("/cdn/")),
        "the weights did not come from the CDN"
    );
    for r in &cdn_requests {
        assert_eq!(
            r.headers.get("authorization"),
            None,
            "{} got the token",
            r.path
        );
    }

    hub.add_folder("org/loop", &model);
    hub.set_fault("org/loop", "config.json", Some(Fault::RedirectLoop));
    let started = Instant::now();
    let out = encode(&hub, &home, "org/loop")
        .env("HF_TOKEN", TOKEN)
        .output()
        .unwrap();
    let line = error_line(&out);
    assert!(
        line.contains("redirect loop") && !line.contains(TOKEN),
        "{line}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a redirect loop hung the run"
    );
}
