//! The dashboard in a real browser: headless Chromium, driven through chromedriver, against
//! `scores serve` fed by `scores simulate`, all on 127.0.0.1. Saves a screenshot to
//! `target/dashboard.png`.
//!
//! Needs `chromium` and `chromedriver` (Debian: `apt-get install chromium chromium-driver`).
//! Set `SCORES_SKIP_BROWSER_TESTS=1` to skip it where they cannot be installed.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod common;

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Running, free_address, scores, wait_for_port};
use fantoccini::key::Key;
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;

const SKIP: &str = "SCORES_SKIP_BROWSER_TESTS";
/// How long the page may take to show what is asserted.
const PATIENCE: Duration = Duration::from_secs(30);

fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// chromedriver's log of the page's console (a Selenium extension chromedriver keeps).
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.to_owned()))
    }
}

/// `serve` against `simulate`, both on free loopback ports.
struct Service {
    _simulator: Running,
    serve: Running,
    address: std::net::SocketAddr,
    upstream: String,
    data_dir: PathBuf,
}

impl Service {
    fn start(data_dir: &Path) -> Service {
        Service::start_with(data_dir, &[])
    }

    /// Started with `extra` options for `serve`.
    fn start_with(data_dir: &Path, extra: &[&str]) -> Service {
        let simulator_address = free_address();
        let simulator = Running(
            scores()
                .args(["simulate", "--rate", "3000", "--burst", "30", "--ids", "--listen"])
                .arg(simulator_address.to_string())
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_for_port(simulator_address);
        let upstream = format!("http://{simulator_address}/scores");
        let address = free_address();
        let serve = Service::serve(&upstream, address, data_dir, extra);
        Service { _simulator: simulator, serve, address, upstream, data_dir: data_dir.into() }
    }

    fn serve(
        upstream: &str,
        address: std::net::SocketAddr,
        data_dir: &Path,
        extra: &[&str],
    ) -> Running {
        let serve = Running(
            scores()
                .args(["serve", "--fsync", "never", "--upstream", upstream, "--listen"])
                .arg(address.to_string())
                .arg("--data-dir")
                .arg(data_dir)
                .args(extra)
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_for_port(address);
        serve
    }

    /// Kills the service and starts it again on the same port and data directory.
    fn restart(&mut self) {
        self.serve.0.kill().unwrap();
        self.serve.0.wait().unwrap();
        self.serve = Service::serve(&self.upstream, self.address, &self.data_dir, &[]);
    }
}

/// chromedriver and the browsers it starts, in a process group of their own: all killed when
/// the test ends, however it ends (killing chromedriver alone would orphan Chromium).
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.0.wait();
    }
}

async fn browser(chromedriver: &Path, chromium: &Path, profile: &Path) -> (Driver, Client) {
    let address = free_address();
    let driver = Driver(
        Command::new(chromedriver)
            .arg(format!("--port={}", address.port()))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(address);
    let options = serde_json::json!({
        "binary": chromium,
        "args": [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            "--disable-dev-shm-usage",
            format!("--user-data-dir={}", profile.display()),
            "--window-size=1280,1500",
        ],
    });
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("goog:chromeOptions".into(), options);
    capabilities.insert("goog:loggingPrefs".into(), serde_json::json!({ "browser": "ALL" }));
    let client = ClientBuilder::new(HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://{address}"))
        .await
        .unwrap();
    (driver, client)
}

/// Runs `script` in the page: one atomic look at a DOM that redraws twice a second.
async fn js(client: &Client, script: &str) -> serde_json::Value {
    client.execute(script, Vec::new()).await.unwrap()
}

async fn text(client: &Client, css: &str) -> String {
    let script = format!("return document.querySelector({css:?}).textContent");
    js(client, &script).await.as_str().unwrap().trim().to_owned()
}

/// A counter as a number ("12,345" is 12345; "–" before the first update is 0).
async fn counter(client: &Client, css: &str) -> u64 {
    text(client, css).await.replace(',', "").parse().unwrap_or(0)
}

/// Waits until `check` holds, polling; fails naming `what` after [`PATIENCE`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !check().await {
        assert!(Instant::now() < deadline, "the dashboard never showed {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn severe_console_messages(client: &Client) -> Vec<String> {
    let log = client.issue_cmd(BrowserLog).await.unwrap();
    log.as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["level"] == "SEVERE")
        .map(|entry| entry["message"].to_string())
        .collect()
}

/// Clicks the first exam's button and returns its exam. Rows hold still under the pointer, but
/// until the click puts it there they may be drawn again between finding a button and using
/// it, which makes the button stale: then it is found again.
async fn click_an_exam(client: &Client) -> String {
    for _ in 0..20 {
        let button = client.find(Locator::Css("#exam-rows button[data-exam]")).await.unwrap();
        if let Ok(Some(exam)) = button.attr("data-exam").await
            && button.click().await.is_ok()
        {
            return exam;
        }
    }
    panic!("no exam's button could be clicked");
}

/// chromedriver and Chromium, or `None` when the browser tests are skipped; panics with an
/// install hint when they are missing.
fn chromium() -> Option<(PathBuf, PathBuf)> {
    if std::env::var_os(SKIP).is_some() {
        eprintln!("skipped: {SKIP} is set");
        return None;
    }
    let hint = format!(
        "is missing: apt-get install chromium chromium-driver (or set {SKIP}=1 to skip this test)"
    );
    let chromedriver = on_path(&["chromedriver"]).unwrap_or_else(|| panic!("chromedriver {hint}"));
    let chromium = on_path(&["chromium", "chromium-browser", "google-chrome"])
        .unwrap_or_else(|| panic!("chromium {hint}"));
    Some((chromedriver, chromium))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_access_control_on_the_dashboard_asks_for_a_token_and_then_shows_live_results() {
    let Some((chromedriver, chromium)) = chromium() else { return };
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "t0ken; with spaces\n").unwrap();
    let service =
        Service::start_with(&dir.path().join("data"), &["--api-tokens", tokens.to_str().unwrap()]);
    let (_driver, client) = browser(&chromedriver, &chromium, &dir.path().join("profile")).await;
    let base = format!("http://{}", service.address);
    client.goto(&base).await.unwrap();
    let sign_in_shown =
        || async { js(&client, "return !document.getElementById('sign-in').hidden").await == true };
    eventually("the sign-in form", sign_in_shown).await;
    let sign_in = |token: &'static str| {
        let client = client.clone();
        async move {
            let field = client.find(Locator::Id("token")).await.unwrap();
            field.send_keys(token).await.unwrap();
            field.send_keys(&Key::Enter.to_string()).await.unwrap();
        }
    };
    sign_in("wrong").await;
    eventually("a wrong token refused", || async {
        text(&client, "#sign-in-message").await.contains("not accepted")
    })
    .await;
    sign_in("t0ken; with spaces").await;
    eventually("live results once signed in", || async {
        counter(&client, "#seq").await > 0 && text(&client, "#link").await == "Live"
    })
    .await;
    assert!(!sign_in_shown().await);
    let url = js(&client, "return location.href").await;
    assert!(!url.as_str().unwrap().contains("t0ken"), "{url}");
    // The token goes in a cookie only this site's requests carry.
    let cookie = js(&client, "return document.cookie").await;
    assert!(cookie.as_str().unwrap().contains("scores_token="), "{cookie}");
    assert!(severe_console_messages(&client).await.iter().all(|m| m.contains("401")));
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_live_counters_exams_histograms_and_students() {
    let Some((chromedriver, chromium)) = chromium() else { return };

    let dir = tempfile::tempdir().unwrap();
    let mut service = Service::start(&dir.path().join("data"));
    let (_driver, client) = browser(&chromedriver, &chromium, &dir.path().join("profile")).await;
    let base = format!("http://{}", service.address);
    client.goto(&base).await.unwrap();
    assert_eq!(client.title().await.unwrap(), "scores: live exam results");

    // The counters move.
    eventually("a first snapshot", || async { counter(&client, "#seq").await > 0 }).await;
    let first = counter(&client, "#seq").await;
    eventually("the sequence number increase", || async { counter(&client, "#seq").await > first })
        .await;
    eventually("accepted events, students and exams", || async {
        counter(&client, "#accepted").await > 0
            && counter(&client, "#students").await > 0
            && counter(&client, "#exams").await > 0
            && counter(&client, "#rate").await > 0
    })
    .await;
    assert_eq!(text(&client, "#upstream").await, "connected");
    assert_eq!(text(&client, "#link").await, "Live");

    // The exams table fills, with averages and counts.
    eventually("exam rows with averages and result counts", || async {
        let rows = js(
            &client,
            "return Array.from(document.querySelectorAll('#exam-rows tr'))
                 .map(row => Array.from(row.cells).map(cell => cell.textContent))",
        )
        .await;
        let rows = rows.as_array().unwrap();
        let is_number = |cell: &serde_json::Value| {
            cell.as_str().unwrap().replace([',', '.'], "").parse::<u64>().is_ok()
        };
        rows.len() >= 3 && rows.iter().all(|row| row.as_array().unwrap().iter().all(is_number))
    })
    .await;

    // Choosing an exam draws its histogram and lists its results.
    let table = client.find(Locator::Css("table.exams")).await.unwrap();
    client
        .execute("arguments[0].scrollIntoView()", vec![serde_json::to_value(&table).unwrap()])
        .await
        .unwrap();
    let exam = click_an_exam(&client).await;
    eventually("the exam's histogram", || async {
        let drawn = js(
            &client,
            "return [document.querySelectorAll('#histogram rect.bar').length,
                     document.querySelectorAll('#exam-results tbody tr').length]",
        )
        .await;
        drawn[0] == 10 && drawn[1].as_u64().unwrap() > 0
    })
    .await;
    assert_eq!(text(&client, "#exam-title").await, format!("Exam {exam}"));
    assert!(text(&client, "#exam-summary").await.contains("results, average"));
    let pressed = js(
        &client,
        "return Array.from(document.querySelectorAll('#exam-rows button[aria-pressed=true]'))
             .map(button => button.dataset.exam)",
    )
    .await;
    assert!(pressed == serde_json::json!([exam]) || pressed == serde_json::json!([]), "{pressed}");
    let drawn = js(
        &client,
        "return Array.from(document.querySelectorAll('#histogram rect.bar'))
             .reduce((sum, bar) => sum + Number(bar.getAttribute('height')), 0)",
    )
    .await;
    assert!(drawn.as_f64().unwrap() > 0.0, "the bars have height");

    // The keyboard chooses too: the pointer still rests on the table, so the rows hold still.
    let buttons = client.find_all(Locator::Css("#exam-rows button[data-exam]")).await.unwrap();
    let other = buttons.last().unwrap();
    let other_exam = other.attr("data-exam").await.unwrap().unwrap();
    other.send_keys(&char::from(Key::Enter).to_string()).await.unwrap();
    eventually("the exam chosen with the keyboard", || async {
        text(&client, "#exam-title").await == format!("Exam {other_exam}")
    })
    .await;

    // A student look-up shows that student's results.
    let student = text(&client, "#exam-results tbody tr td").await;
    let input = client.find(Locator::Css("#student-id")).await.unwrap();
    input.send_keys(&student).await.unwrap();
    client.find(Locator::Css("#student-form button")).await.unwrap().click().await.unwrap();
    eventually("the student's results", || async {
        let rows =
            js(&client, "return document.querySelectorAll('#student-result tbody tr').length");
        rows.await.as_u64().unwrap() > 0 && text(&client, "#student-result strong").await == student
    })
    .await;

    // At phone width nothing overflows sideways.
    client.set_window_size(390, 844).await.unwrap();
    let overflow = js(
        &client,
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
    )
    .await;
    assert!(overflow.as_i64().unwrap() <= 0, "horizontal overflow at 390 px: {overflow}");

    // There the columns stack: choosing an exam brings its details into view.
    js(&client, "window.scrollTo(0, 0)").await;
    let chosen = click_an_exam(&client).await;
    eventually("the chosen exam's details in view at 390 px", || async {
        let place = js(
            &client,
            "const top = document.getElementById('exam-detail').getBoundingClientRect().top;
             return [top, window.innerHeight, document.getElementById('exam-title').textContent]",
        )
        .await;
        let top = place[0].as_f64().unwrap();
        top >= -1.0
            && top < place[1].as_f64().unwrap() / 2.0
            && place[2] == format!("Exam {chosen}")
    })
    .await;
    client.set_window_size(1280, 1500).await.unwrap();

    // Any exam can be found by its number, whether or not it is among the recent ones.
    let find_exam = |number: String| {
        let client = &client;
        async move {
            let input = client.find(Locator::Css("#exam-number")).await.unwrap();
            input.clear().await.unwrap();
            input.send_keys(&number).await.unwrap();
            client.find(Locator::Css("#exam-form button")).await.unwrap().click().await.unwrap();
        }
    };
    find_exam(exam.clone()).await;
    eventually("the exam found by its number", || async {
        text(&client, "#exam-title").await == format!("Exam {exam}")
            && text(&client, "#exam-summary").await.contains("results, average")
    })
    .await;
    find_exam("99".to_owned()).await;
    eventually("an exam with no results said so", || async {
        text(&client, "#exam-summary").await == "No results for exam 99 yet."
            && js(&client, "return document.getElementById('histogram-figure').hidden").await
                == serde_json::json!(true)
    })
    .await;
    // Back to one with results, for the screenshot below.
    find_exam(exam.clone()).await;
    eventually("the exam found again", || async {
        text(&client, "#exam-summary").await.contains("results, average")
            && js(&client, "return document.getElementById('histogram-figure').hidden").await
                == serde_json::json!(false)
    })
    .await;

    // The ingest rate is a mean over ten seconds: a feed of 20 events every 5 s, polled each
    // second, reads 4 events/s throughout, where a rate over one poll read 20, 0, 0, 0, 0.
    let rates = js(
        &client,
        "const samples = [], rates = [];
         for (let time = 0; time <= 30000; time += 1000) {
           rates.push(noteRate(samples, 20 * (Math.floor(time / 5000) + 1), time));
         }
         return rates.slice(10)",
    )
    .await;
    for rate in rates.as_array().unwrap() {
        let rate = rate.as_f64().unwrap();
        assert!((3.0..=5.0).contains(&rate), "a rate of {rate} in {rates}");
    }

    // The browser reports the 404 asked for above; it is the answer, not a fault of the page.
    let mut messages = severe_console_messages(&client).await;
    messages.retain(|message| !message.contains("/exams/99 - Failed to load resource"));
    assert_eq!(messages, Vec::<String>::new(), "console errors");
    js(&client, "window.scrollTo(0, 0)").await;
    let screenshot = client.screenshot().await.unwrap();
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join("dashboard.png"), screenshot).unwrap();

    // The service restarts; the page reconnects by itself and goes on counting.
    service.restart();
    let before = counter(&client, "#seq").await;
    eventually("live updates after the service restarted", || async {
        text(&client, "#link").await == "Live" && counter(&client, "#seq").await > before
    })
    .await;

    client.close().await.unwrap();
}
