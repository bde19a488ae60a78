//! The hot-key analytics as an output: records in, `/top` questions answered at each flush,
//! tables printed at the end for `replay --top N`.

use std::io::{self, Write as _};

use tokio::sync::mpsc;

use crate::analytics::http::TopRequest;
use crate::analytics::{Analytics, TopConfig, tables_text};
use crate::record::{CommandRecord, Sink};

pub struct TopSink {
    analytics: Analytics,
    /// Questions from the `/top` endpoint (`run`).
    questions: Option<mpsc::Receiver<TopRequest>>,
    /// `replay --top N`: print the tables, N lines each, at the end.
    print: Option<usize>,
}

impl TopSink {
    #[must_use]
    pub fn new(cfg: TopConfig) -> Self {
        TopSink {
            analytics: Analytics::new(cfg),
            questions: None,
            print: None,
        }
    }

    /// Answers the questions arriving on `rx` (at each flush).
    #[must_use]
    pub fn serving(mut self, rx: mpsc::Receiver<TopRequest>) -> Self {
        self.questions = Some(rx);
        self
    }

    /// Prints the tables, `n` lines each, to stdout when closed.
    #[must_use]
    pub fn printing(mut self, n: usize) -> Self {
        self.print = Some(n);
        self
    }

    #[must_use]
    pub fn analytics(&self) -> &Analytics {
        &self.analytics
    }
}

impl Sink for TopSink {
    fn command(&mut self, rec: &CommandRecord<'_>) {
        self.analytics.record(rec);
    }

    fn flush(&mut self) {
        if let Some(rx) = self.questions.as_mut() {
            while let Ok((q, tx)) = rx.try_recv() {
                let _ = tx.send(self.analytics.answer(&q));
            }
        }
    }

    fn tick(&mut self, now_ns: u64) {
        self.analytics.advance(now_ns);
    }

    fn close(&mut self) -> io::Result<()> {
        self.flush();
        if let Some(n) = self.print.take() {
            let text = tables_text(&self.analytics, n);
            let mut out = io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()?;
        }
        Ok(())
    }
}
