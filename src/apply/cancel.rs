//! Stopping a rollout: the first Ctrl-C or SIGTERM stops new work while the tenant in hand
//! completes its gate or its rollback; a second one abandons it, and the report says what was
//! left (the next plan describes it and the next apply finishes or undoes it).

use tokio_util::sync::CancellationToken;

/// Shared by everything that runs for one rollout (or one `mtp watch`).
#[derive(Debug, Clone, Default)]
pub struct Cancel {
    stop: CancellationToken,
    abort: CancellationToken,
}

impl Cancel {
    /// No new tenant is started; the one in hand finishes or rolls back.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// The tenant in hand is abandoned where it stands.
    pub fn abort(&self) {
        self.stop.cancel();
        self.abort.cancel();
    }

    /// A signal: the first stops, the next aborts. Returns whether this one aborted.
    pub fn signal(&self) -> bool {
        if self.stop.is_cancelled() {
            self.abort();
            true
        } else {
            self.stop();
            false
        }
    }

    /// A cancel of its own for one part of the work: stopped with this one, and stoppable
    /// alone (watch stops the reconciles of a host whose lock was lost).
    pub fn child(&self) -> Cancel {
        Cancel {
            stop: self.stop.child_token(),
            abort: self.abort.child_token(),
        }
    }

    pub fn is_stopping(&self) -> bool {
        self.stop.is_cancelled()
    }

    pub fn is_aborted(&self) -> bool {
        self.abort.is_cancelled()
    }

    /// Resolves once new work is to stop.
    pub async fn stopping(&self) {
        self.stop.cancelled().await
    }

    /// Resolves once the work in hand is to be abandoned.
    pub async fn aborted(&self) {
        self.abort.cancelled().await
    }
}

/// Feeds SIGINT and SIGTERM into `cancel` until the process ends; `on_signal` is told whether
/// each one stopped (false) or aborted (true), to say so.
pub async fn forward_signals(cancel: Cancel, on_signal: impl Fn(bool) + Send + 'static) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        on_signal(cancel.signal());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_signal_stops_the_second_aborts() {
        let c = Cancel::default();
        assert!(!c.is_stopping() && !c.is_aborted());
        assert!(!c.signal());
        assert!(c.is_stopping() && !c.is_aborted());
        assert!(c.signal());
        assert!(c.is_aborted());
    }
}
