//! Progress for long one-off commands (`sync`, `setup`): a bar on a
//! terminal (records pulled, of the total where known, calls, 429s and the
//! time spent waiting on rate limits and why), else a plain line on
//! standard error every ten seconds, so nobody takes a rate-limited pass
//! for a hung one.

use std::io::IsTerminal as _;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::crm::http::Http;

/// How often a line is printed when standard error is not a terminal.
const LINE_EVERY: Duration = Duration::from_secs(10);

/// Shows how `http`'s work goes until the returned future is dropped.
/// `what` names the work; `total` is the records expected, when known.
pub async fn show(http: &Http, what: &str, total: Option<u64>) -> std::convert::Infallible {
    let terminal = std::io::stderr().is_terminal();
    let bar = if terminal {
        let bar = match total {
            Some(total) => indicatif::ProgressBar::new(total).with_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {pos}/{len} records  {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            ),
            None => indicatif::ProgressBar::new_spinner().with_style(
                indicatif::ProgressStyle::with_template("{prefix} {spinner} {pos} records  {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            ),
        };
        bar.set_prefix(what.to_owned());
        Some(bar)
    } else {
        None
    };
    let started = std::time::Instant::now();
    let mut last_line = std::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let _clear = Clear(bar.clone());
    loop {
        tick.tick().await;
        let stats = &http.stats;
        let records = stats.records.load(Ordering::Relaxed);
        let calls = stats.calls.load(Ordering::Relaxed);
        let throttled = stats.throttled.load(Ordering::Relaxed);
        let waiting = stats.waiting.load(Ordering::Relaxed);
        let mut message = format!("{calls} calls");
        if throttled > 0 {
            message.push_str(&format!(", {throttled} answered 429"));
        }
        if http.budget_left() == 0 {
            message.push_str(", the daily budget is spent");
        } else if waiting > 0 {
            let per = http
                .window_allowed()
                .unwrap_or(http.limits().per_ten_seconds);
            message.push_str(&format!(
                ", paced by the rate limit ({per} calls per {}s)",
                http.limits().interval.as_secs()
            ));
        }
        match &bar {
            Some(bar) => {
                bar.set_position(records);
                bar.set_message(message);
            }
            None if last_line.elapsed() >= LINE_EVERY => {
                last_line = std::time::Instant::now();
                eprintln!(
                    "{what}: {records} records{} after {}s; {message}",
                    total.map(|t| format!(" of {t}")).unwrap_or_default(),
                    started.elapsed().as_secs()
                );
            }
            None => {}
        }
    }
}

/// Clears the bar when the progress future is dropped.
struct Clear(Option<indicatif::ProgressBar>);

impl Drop for Clear {
    fn drop(&mut self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}
