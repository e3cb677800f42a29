//! The C ABI over the blocking [`Client`]: `include/weft_shm.h` declares
//! these functions and documents each (the header is the contract; keep
//! the two in step).
//!
//! Owns: the opaque handle (a client and at most one message held back
//! for a receive whose buffers were too small), the error codes, and the
//! calling thread's last error text. Must not touch: the client's
//! internals (only its public API is used).
//!
//! Safety at the boundary: every function checks its pointers (NULL where
//! not allowed is `WEFT_SHM_ERR_ARGUMENT`, never a crash), copies out only
//! within the capacities it is given, and runs its body under
//! `catch_unwind`, so a panic comes back as `WEFT_SHM_ERR_PANIC` instead
//! of unwinding into C (with `panic = "abort"`, as this workspace's
//! release profile sets, a panic aborts the process instead). Bounds: the
//! held message is one message; the last error text is one string per
//! thread.
//!
//! Hand-written rather than generated (cbindgen): eight functions and a
//! dozen constants, and the header carries documentation a generator would
//! have to be taught.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::{Client, Dialect, Error, Message, Options};

pub const WEFT_SHM_OK: c_int = 0;
/// `weft_shm_recv`: no message within the timeout.
pub const WEFT_SHM_EMPTY: c_int = 1;
pub const WEFT_SHM_ERR_IO: c_int = -1;
pub const WEFT_SHM_ERR_HANDSHAKE: c_int = -2;
pub const WEFT_SHM_ERR_REFUSED: c_int = -3;
pub const WEFT_SHM_ERR_CLOSED: c_int = -4;
pub const WEFT_SHM_ERR_CORRUPT: c_int = -5;
pub const WEFT_SHM_ERR_PROTOCOL: c_int = -6;
pub const WEFT_SHM_ERR_INVALID: c_int = -7;
pub const WEFT_SHM_ERR_TOO_LARGE: c_int = -8;
pub const WEFT_SHM_ERR_TIMEOUT: c_int = -9;
/// `weft_shm_recv`: a buffer is too small; the message is kept for the
/// next call and the lengths say what it needs.
pub const WEFT_SHM_ERR_BUFFER: c_int = -10;
/// A NULL or non-UTF-8 argument, or an unknown dialect.
pub const WEFT_SHM_ERR_ARGUMENT: c_int = -11;
pub const WEFT_SHM_ERR_PANIC: c_int = -12;

pub const WEFT_SHM_NATS: c_int = 0;
pub const WEFT_SHM_MQTT: c_int = 1;

/// The opaque handle C holds (`weft_shm_client *`).
pub struct WeftShmClient {
    client: Client,
    /// A message a receive could not copy out (buffers too small): the
    /// next receive returns it first.
    held: Mutex<Option<Message>>,
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(text: &str) {
    let text = CString::new(text.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = text);
}

fn code(e: &Error) -> c_int {
    match e {
        Error::Io(_) => WEFT_SHM_ERR_IO,
        Error::Handshake(_) => WEFT_SHM_ERR_HANDSHAKE,
        Error::Refused(_) => WEFT_SHM_ERR_REFUSED,
        Error::Closed => WEFT_SHM_ERR_CLOSED,
        Error::Corrupt(_) => WEFT_SHM_ERR_CORRUPT,
        Error::Protocol(_) => WEFT_SHM_ERR_PROTOCOL,
        Error::Invalid(_) => WEFT_SHM_ERR_INVALID,
        Error::TooLarge => WEFT_SHM_ERR_TOO_LARGE,
        Error::Timeout => WEFT_SHM_ERR_TIMEOUT,
    }
}

/// An error code with its text recorded for `weft_shm_last_error`.
fn fail(code: c_int, text: &str) -> c_int {
    set_last_error(text);
    code
}

fn failed(e: Error) -> c_int {
    fail(code(&e), &e.to_string())
}

/// Runs `f` with panics caught: a panic is `WEFT_SHM_ERR_PANIC`.
fn guard(f: impl FnOnce() -> c_int) -> c_int {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(c) => c,
        Err(_) => fail(WEFT_SHM_ERR_PANIC, "weft-shm: internal panic"),
    }
}

/// A C string argument as `&str`; None (and the last error set) for NULL
/// or non-UTF-8.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that lives for `'a`.
unsafe fn text<'a>(p: *const c_char, what: &str) -> Option<&'a str> {
    if p.is_null() {
        set_last_error(&format!("weft-shm: {what} is NULL"));
        return None;
    }
    match CStr::from_ptr(p).to_str() {
        Ok(s) => Some(s),
        Err(_) => {
            set_last_error(&format!("weft-shm: {what} is not UTF-8"));
            None
        }
    }
}

/// # Safety
/// `p` is NULL or points to a NUL-terminated string.
unsafe fn optional_text(p: *const c_char, what: &str) -> Result<Option<String>, ()> {
    if p.is_null() {
        return Ok(None);
    }
    text(p, what).map(|s| Some(s.to_string())).ok_or(())
}

/// # Safety
/// `c` is NULL or a handle from `weft_shm_connect` not yet closed.
unsafe fn handle<'a>(c: *const WeftShmClient) -> Option<&'a WeftShmClient> {
    if c.is_null() {
        set_last_error("weft-shm: the client handle is NULL");
    }
    c.as_ref()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Connects; see the header. NULL on failure, with `*error` set (if
/// `error` is not NULL).
///
/// # Safety
/// C strings as the header says; `error` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn weft_shm_connect(
    path: *const c_char,
    dialect: c_int,
    client_id: *const c_char,
    spin_us: u32,
    user: *const c_char,
    password: *const c_char,
    error: *mut c_int,
) -> *mut WeftShmClient {
    let mut out = std::ptr::null_mut();
    let rc = guard(|| {
        let dialect = match dialect {
            WEFT_SHM_NATS => Dialect::Nats,
            WEFT_SHM_MQTT => Dialect::Mqtt,
            d => {
                return fail(
                    WEFT_SHM_ERR_ARGUMENT,
                    &format!("weft-shm: unknown dialect {d}"),
                )
            }
        };
        let (Some(path), Some(client_id)) = (text(path, "path"), text(client_id, "client_id"))
        else {
            return WEFT_SHM_ERR_ARGUMENT;
        };
        let (Ok(user), Ok(password)) = (
            optional_text(user, "user"),
            optional_text(password, "password"),
        ) else {
            return WEFT_SHM_ERR_ARGUMENT;
        };
        let options = Options {
            dialect,
            client_id: client_id.to_string(),
            spin_us,
            user,
            password,
        };
        match Client::connect(path, options) {
            Ok(client) => {
                out = Box::into_raw(Box::new(WeftShmClient {
                    client,
                    held: Mutex::new(None),
                }));
                WEFT_SHM_OK
            }
            Err(e) => failed(e),
        }
    });
    if !error.is_null() {
        *error = rc;
    }
    out
}

/// Publishes (blocks while the ring is full); see the header.
///
/// # Safety
/// `c` a live handle, `topic` a C string, `payload` `len` readable bytes
/// (or NULL with `len` 0).
#[no_mangle]
pub unsafe extern "C" fn weft_shm_publish(
    c: *const WeftShmClient,
    topic: *const c_char,
    payload: *const c_void,
    len: usize,
) -> c_int {
    guard(|| {
        let (Some(c), Some(topic)) = (handle(c), text(topic, "topic")) else {
            return WEFT_SHM_ERR_ARGUMENT;
        };
        let payload: &[u8] = match (payload.is_null(), len) {
            (_, 0) => &[],
            (true, _) => return fail(WEFT_SHM_ERR_ARGUMENT, "weft-shm: payload is NULL"),
            (false, n) => std::slice::from_raw_parts(payload.cast::<u8>(), n),
        };
        match c.client.publish(topic, payload) {
            Ok(()) => WEFT_SHM_OK,
            Err(e) => failed(e),
        }
    })
}

/// # Safety
/// `c` a live handle, `filter` a C string.
#[no_mangle]
pub unsafe extern "C" fn weft_shm_subscribe(
    c: *const WeftShmClient,
    filter: *const c_char,
) -> c_int {
    with_filter(c, filter, |client, filter| client.subscribe(filter))
}

/// # Safety
/// `c` a live handle, `filter` a C string.
#[no_mangle]
pub unsafe extern "C" fn weft_shm_unsubscribe(
    c: *const WeftShmClient,
    filter: *const c_char,
) -> c_int {
    with_filter(c, filter, |client, filter| client.unsubscribe(filter))
}

/// The body of `weft_shm_subscribe` and `weft_shm_unsubscribe`: checks the
/// handle and the filter, then calls `call` with them.
///
/// # Safety
/// `c` a live handle or NULL, `filter` a C string or NULL.
unsafe fn with_filter(
    c: *const WeftShmClient,
    filter: *const c_char,
    call: impl FnOnce(&Client, &str) -> Result<(), Error>,
) -> c_int {
    guard(|| {
        let (Some(c), Some(filter)) = (handle(c), text(filter, "filter")) else {
            return WEFT_SHM_ERR_ARGUMENT;
        };
        match call(&c.client, filter) {
            Ok(()) => WEFT_SHM_OK,
            Err(e) => failed(e),
        }
    })
}

/// Copies `m` out if both buffers take it (the topic NUL-terminated);
/// the lengths are written either way.
///
/// # Safety
/// The buffers hold their capacities (or are NULL with capacity 0); the
/// length pointers are writable.
unsafe fn copy_out(topic: &str, payload: &[u8], out: &mut RecvBuffers) -> bool {
    *out.topic_len = topic.len();
    *out.payload_len = payload.len();
    if topic.len() >= out.topic_cap || payload.len() > out.payload_cap {
        return false;
    }
    std::ptr::copy_nonoverlapping(topic.as_ptr(), out.topic.cast::<u8>(), topic.len());
    *out.topic.add(topic.len()) = 0;
    if !payload.is_empty() {
        std::ptr::copy_nonoverlapping(payload.as_ptr(), out.payload.cast::<u8>(), payload.len());
    }
    true
}

struct RecvBuffers {
    topic: *mut c_char,
    topic_cap: usize,
    topic_len: *mut usize,
    payload: *mut c_void,
    payload_cap: usize,
    payload_len: *mut usize,
}

/// Receives one message into the caller's buffers; see the header.
///
/// # Safety
/// `c` a live handle; `topic` `topic_cap` writable bytes and `payload`
/// `payload_cap` writable bytes (either NULL with capacity 0);
/// `topic_len` and `payload_len` writable.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn weft_shm_recv(
    c: *const WeftShmClient,
    timeout_ms: i64,
    topic: *mut c_char,
    topic_cap: usize,
    topic_len: *mut usize,
    payload: *mut c_void,
    payload_cap: usize,
    payload_len: *mut usize,
) -> c_int {
    guard(|| {
        let Some(c) = handle(c) else {
            return WEFT_SHM_ERR_ARGUMENT;
        };
        if topic_len.is_null()
            || payload_len.is_null()
            || (topic.is_null() && topic_cap > 0)
            || (payload.is_null() && payload_cap > 0)
        {
            return fail(
                WEFT_SHM_ERR_ARGUMENT,
                "weft-shm: a NULL buffer with a capacity, or a NULL length",
            );
        }
        let mut out = RecvBuffers {
            topic,
            topic_cap,
            topic_len,
            payload,
            payload_cap,
            payload_len,
        };
        // Held for the whole call: receivers take turns (one receiver
        // thread per client is the model).
        let mut held = lock(&c.held);
        if let Some(m) = held.take() {
            if copy_out(&m.topic, &m.payload, &mut out) {
                return WEFT_SHM_OK;
            }
            *held = Some(m);
            return fail(WEFT_SHM_ERR_BUFFER, "weft-shm: buffer too small");
        }
        let forever = timeout_ms < 0;
        let timeout = Duration::from_millis(timeout_ms.max(0) as u64);
        loop {
            let got = c.client.recv_with_timeout(
                if forever {
                    Duration::from_secs(3600)
                } else {
                    timeout
                },
                |t, p| {
                    if copy_out(t, p, &mut out) {
                        None
                    } else {
                        Some(Message {
                            topic: t.to_string(),
                            payload: p.to_vec(),
                        })
                    }
                },
            );
            return match got {
                Ok(Some(None)) => WEFT_SHM_OK,
                Ok(Some(Some(kept))) => {
                    *held = Some(kept);
                    fail(WEFT_SHM_ERR_BUFFER, "weft-shm: buffer too small")
                }
                Ok(None) if forever => continue,
                Ok(None) => WEFT_SHM_EMPTY,
                Err(e) => failed(e),
            };
        }
    })
}

/// # Safety
/// `c` a live handle.
#[no_mangle]
pub unsafe extern "C" fn weft_shm_flush(c: *const WeftShmClient) -> c_int {
    guard(|| {
        let Some(c) = handle(c) else {
            return WEFT_SHM_ERR_ARGUMENT;
        };
        match c.client.flush() {
            Ok(()) => WEFT_SHM_OK,
            Err(e) => failed(e),
        }
    })
}

/// Closes the connection and frees the handle (NULL: nothing).
///
/// # Safety
/// `c` NULL or a live handle, used by no other thread now or later.
#[no_mangle]
pub unsafe extern "C" fn weft_shm_close(c: *mut WeftShmClient) {
    if c.is_null() {
        return;
    }
    let _ = catch_unwind(AssertUnwindSafe(|| drop(Box::from_raw(c))));
}

/// The calling thread's last error text ("" if none); valid until that
/// thread's next call.
#[no_mangle]
pub extern "C" fn weft_shm_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// A fixed description of a code.
#[no_mangle]
pub extern "C" fn weft_shm_strerror(code: c_int) -> *const c_char {
    let s: &'static CStr = match code {
        WEFT_SHM_OK => c"ok",
        WEFT_SHM_EMPTY => c"no message within the timeout",
        WEFT_SHM_ERR_IO => c"a system call failed",
        WEFT_SHM_ERR_HANDSHAKE => c"the handshake failed",
        WEFT_SHM_ERR_REFUSED => c"the router refused",
        WEFT_SHM_ERR_CLOSED => c"the router closed the connection",
        WEFT_SHM_ERR_CORRUPT => c"the router wrote an impossible ring index",
        WEFT_SHM_ERR_PROTOCOL => c"the router sent bytes the client cannot parse",
        WEFT_SHM_ERR_INVALID => c"a bad topic or filter, or not subscribed",
        WEFT_SHM_ERR_TOO_LARGE => c"the message is larger than the ring",
        WEFT_SHM_ERR_TIMEOUT => c"the router did not answer in time",
        WEFT_SHM_ERR_BUFFER => c"a buffer is too small (the message is kept)",
        WEFT_SHM_ERR_ARGUMENT => c"a NULL or non-UTF-8 argument, or an unknown dialect",
        WEFT_SHM_ERR_PANIC => c"internal error (a panic was caught)",
        _ => c"unknown code",
    };
    s.as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_arguments_are_codes_not_crashes() {
        let mut err = 0;
        let c = unsafe {
            weft_shm_connect(
                std::ptr::null(),
                WEFT_SHM_NATS,
                c"id".as_ptr(),
                0,
                std::ptr::null(),
                std::ptr::null(),
                &mut err,
            )
        };
        assert!(c.is_null());
        assert_eq!(err, WEFT_SHM_ERR_ARGUMENT);
        let last = unsafe { CStr::from_ptr(weft_shm_last_error()) };
        assert!(last.to_str().unwrap().contains("path is NULL"), "{last:?}");
        let c = unsafe {
            weft_shm_connect(
                c"/nonexistent/weft.sock".as_ptr(),
                7,
                c"id".as_ptr(),
                0,
                std::ptr::null(),
                std::ptr::null(),
                &mut err,
            )
        };
        assert!(c.is_null());
        assert_eq!(err, WEFT_SHM_ERR_ARGUMENT);
        let c = unsafe {
            weft_shm_connect(
                c"/nonexistent/weft.sock".as_ptr(),
                WEFT_SHM_MQTT,
                c"id".as_ptr(),
                0,
                std::ptr::null(),
                std::ptr::null(),
                &mut err,
            )
        };
        assert!(c.is_null());
        assert_eq!(err, WEFT_SHM_ERR_IO);
        assert_eq!(
            unsafe { weft_shm_publish(std::ptr::null(), c"t".as_ptr(), std::ptr::null(), 0) },
            WEFT_SHM_ERR_ARGUMENT
        );
        assert_eq!(
            unsafe { weft_shm_flush(std::ptr::null()) },
            WEFT_SHM_ERR_ARGUMENT
        );
        unsafe { weft_shm_close(std::ptr::null_mut()) };
        let s = unsafe { CStr::from_ptr(weft_shm_strerror(WEFT_SHM_ERR_BUFFER)) };
        assert!(s.to_str().unwrap().contains("kept"));
    }
}
