//! The write gate that makes a snapshot point-in-time: writes pass through it; a snapshot
//! closes it, waits for the writes already inside to finish (so every acknowledged write is
//! in the file), copies, and opens it again. Writes that arrive meanwhile wait.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

#[derive(Debug, Default)]
pub struct WriteGate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct GateState {
    writers: usize,
    closed: bool,
}

impl WriteGate {
    /// Waits until the gate is open, then counts a writer in until the pass drops.
    pub fn enter(&self) -> WritePass<'_> {
        let mut state = self.wait_while(self.lock(), |state| state.closed);
        state.writers += 1;
        WritePass { gate: self }
    }

    /// Closes the gate and waits until no write is in flight. The gate stays closed until the
    /// returned guard drops; it can move to the thread that does the copying.
    pub fn close(self: &Arc<Self>) -> ClosedGate {
        let mut state = self.wait_while(self.lock(), |state| state.closed);
        state.closed = true;
        drop(self.wait_while(state, |state| state.writers > 0));
        ClosedGate {
            gate: Arc::clone(self),
        }
    }

    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait_while<'a>(
        &self,
        guard: MutexGuard<'a, GateState>,
        condition: impl FnMut(&mut GateState) -> bool,
    ) -> MutexGuard<'a, GateState> {
        self.changed
            .wait_while(guard, condition)
            .unwrap_or_else(|e| e.into_inner())
    }
}

/// A write in flight.
#[derive(Debug)]
pub struct WritePass<'a> {
    gate: &'a WriteGate,
}

impl Drop for WritePass<'_> {
    fn drop(&mut self) {
        let mut state = self.gate.lock();
        state.writers -= 1;
        if state.writers == 0 {
            self.gate.changed.notify_all();
        }
    }
}

/// The gate held closed (for a snapshot copy); reopens on drop.
#[derive(Debug)]
pub struct ClosedGate {
    gate: Arc<WriteGate>,
}

impl Drop for ClosedGate {
    fn drop(&mut self) {
        self.gate.lock().closed = false;
        self.gate.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    #[test]
    fn a_closed_gate_holds_writers_until_it_reopens() {
        let gate = Arc::new(WriteGate::default());
        let closed = gate.close();
        let wrote = Arc::new(AtomicBool::new(false));
        let writer = {
            let (gate, wrote) = (Arc::clone(&gate), Arc::clone(&wrote));
            std::thread::spawn(move || {
                let _pass = gate.enter();
                wrote.store(true, Ordering::SeqCst);
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !wrote.load(Ordering::SeqCst),
            "a write passed a closed gate"
        );
        drop(closed);
        writer.join().expect("writer thread");
        assert!(wrote.load(Ordering::SeqCst));
    }

    #[test]
    fn closing_waits_for_writes_in_flight() {
        let gate = Arc::new(WriteGate::default());
        let pass_dropped = Arc::new(AtomicBool::new(false));
        let pass = gate.enter();
        let closer = {
            let (gate, pass_dropped) = (Arc::clone(&gate), Arc::clone(&pass_dropped));
            std::thread::spawn(move || {
                let _closed = gate.close();
                assert!(
                    pass_dropped.load(Ordering::SeqCst),
                    "closed with a write in flight"
                );
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        pass_dropped.store(true, Ordering::SeqCst);
        drop(pass);
        closer.join().expect("closer thread");
    }
}
