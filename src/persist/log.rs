//! TEMPORARY stand-in for h22's log layer (same API), replaced at merge.
#![allow(dead_code)]
use std::cell::{Cell, RefCell};
use std::rc::Rc;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogError {
    Full,
    Failed(String),
}

type Callback = Box<dyn FnOnce(Result<(), LogError>)>;

#[derive(Default)]
pub struct Log {
    appended: Cell<u64>,
    pub records: RefCell<Vec<(u8, Vec<u8>)>>,
    callbacks: RefCell<Vec<Callback>>,
}

impl Log {
    pub fn append(&self, kind: u8, body: &[u8]) -> Result<u64, LogError> {
        self.records.borrow_mut().push((kind, body.to_vec()));
        self.appended.set(self.appended.get() + 1);
        Ok(self.appended.get())
    }
    pub fn appended(&self) -> u64 {
        self.appended.get()
    }
    pub fn durable(&self) -> u64 {
        self.appended.get()
    }
    pub async fn wait_durable(&self, _pos: u64) -> Result<(), LogError> {
        Ok(())
    }
    pub fn on_durable(&self, _pos: u64, f: Callback) {
        f(Ok(()))
    }
    pub fn health(&self) -> Result<(), LogError> {
        Ok(())
    }
    pub fn wants_compaction(&self) -> bool {
        false
    }
    pub fn compact(&self, records: impl Iterator<Item = (u8, Vec<u8>)>) {
        records.for_each(drop)
    }
    pub async fn run(self: Rc<Self>) {}
    pub fn close(&self) {}
}
