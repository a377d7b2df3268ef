//! The extern functions called straight from Rust (through the rlib): what
//! the C programs in `tests/c` cannot easily show.

use std::ffi::{c_void, CStr};
use std::io::Read as _;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, IntoRawFd};
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use farewell_ffi::*;

/// A closer with `policy` and `callback`/`user`; panics unless it is made.
fn closer(policy: &CStr, callback: fw_outcome_fn, user: *mut c_void) -> *mut fw_closer {
    let options = fw_options_new();
    let mut closer = std::ptr::null_mut();
    // SAFETY: `options` is live until freed below; `closer` is a valid out-pointer.
    unsafe {
        assert_eq!(fw_options_set_policy(options, policy.as_ptr()), FW_OK);
        assert_eq!(
            fw_options_set_outcome_callback(options, callback, user),
            FW_OK
        );
        assert_eq!(fw_closer_new(options, &mut closer), FW_OK);
        fw_options_free(options);
    }
    closer
}

fn stats(closer: *const fw_closer) -> fw_stats {
    let mut stats = fw_stats {
        size: std::mem::size_of::<fw_stats>(),
        ..fw_stats::default()
    };
    // SAFETY: a live closer and a valid fw_stats.
    assert_eq!(unsafe { fw_closer_stats(closer, &mut stats) }, FW_OK);
    stats
}

/// Waits (at most 5 s) until `finished` teardowns have reported.
fn wait_finished(closer: *const fw_closer, finished: u64) -> fw_stats {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = stats(closer);
        if now.finished >= finished || Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_number_reused_after_its_teardown_ended_is_taken_again() {
    let closer = closer(c"abort", None, std::ptr::null_mut());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let _client1 = TcpStream::connect(addr).unwrap();
    let fd = listener.accept().unwrap().0.into_raw_fd();
    // SAFETY: a live closer; `fd` is ours to hand over.
    assert_eq!(unsafe { fw_close(closer, fd, std::ptr::null(), 0) }, FW_OK);
    assert_eq!(wait_finished(closer, 1).finished, 1);

    // The kernel gives the lowest free number: most likely `fd` again.
    let _client2 = TcpStream::connect(addr).unwrap();
    let second = listener.accept().unwrap().0.into_raw_fd();
    // SAFETY: as above.
    assert_eq!(
        unsafe { fw_close(closer, second, std::ptr::null(), 0) },
        FW_OK,
        "fd {second} (was {fd})"
    );
    assert_eq!(wait_finished(closer, 2).finished, 2);
    // SAFETY: a live closer, freed once.
    assert_eq!(unsafe { fw_closer_free(closer, 1000) }, FW_OK);
}

static FREE_FROM_CALLBACK: AtomicI32 = AtomicI32::new(1);
static THE_CLOSER: AtomicPtr<fw_closer> = AtomicPtr::new(std::ptr::null_mut());

unsafe extern "C" fn free_itself(_outcome: *const fw_outcome, _user: *mut c_void) {
    // SAFETY: THE_CLOSER is live (the test frees it only after this ran);
    // called from the library's own thread, the call must refuse.
    let code = unsafe { fw_closer_free(THE_CLOSER.load(Ordering::SeqCst), 0) };
    FREE_FROM_CALLBACK.store(code, Ordering::SeqCst);
}

#[test]
fn fw_closer_free_from_a_callback_is_refused() {
    let closer = closer(c"abort", Some(free_itself), std::ptr::null_mut());
    THE_CLOSER.store(closer, Ordering::SeqCst);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let fd = listener.accept().unwrap().0.into_raw_fd();
    // SAFETY: a live closer; `fd` is ours.
    assert_eq!(unsafe { fw_close(closer, fd, std::ptr::null(), 0) }, FW_OK);
    wait_finished(closer, 1);
    assert_eq!(
        FREE_FROM_CALLBACK.load(Ordering::SeqCst),
        FW_ERR_IN_CALLBACK
    );
    // SAFETY: still live (the callback's free was refused), freed once.
    assert_eq!(unsafe { fw_closer_free(closer, 1000) }, FW_OK);
}

static OUTCOMES: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" fn count(outcome: *const fw_outcome, _user: *mut c_void) {
    // SAFETY: the library passes a valid outcome for the call's duration.
    let outcome = unsafe { &*outcome };
    assert_eq!(outcome.size, std::mem::size_of::<fw_outcome>());
    assert_eq!(outcome.ending, FW_ENDING_PEER_CLOSED);
    assert_eq!(outcome.time_wait, FW_TIME_WAIT_PEER);
    assert_eq!(outcome.goodbye, FW_DELIVERY_CONFIRMED);
    OUTCOMES.fetch_add(1, Ordering::SeqCst);
}

#[test]
fn one_closer_takes_connections_from_many_threads_at_once() {
    const THREADS: usize = 8;
    const EACH: usize = 16;
    let closer = closer(c"peer-first", Some(count), std::ptr::null_mut()) as usize;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            let listener = listener.try_clone().unwrap();
            scope.spawn(move || {
                for _ in 0..EACH {
                    let mut client = TcpStream::connect(addr).unwrap();
                    client
                        .set_read_timeout(Some(Duration::from_secs(5)))
                        .unwrap();
                    let (server, _) = listener.accept().unwrap();
                    let fd = server.as_raw_fd();
                    std::mem::forget(server); // handed over below
                                              // SAFETY: a live closer; `fd` is ours and given up here.
                    let code =
                        unsafe { fw_close(closer as *const fw_closer, fd, b"BYE\n".as_ptr(), 4) };
                    assert_eq!(code, FW_OK);
                    // A cooperative client: reads the goodbye, then closes first.
                    let mut goodbye = [0u8; 4];
                    client.read_exact(&mut goodbye).unwrap();
                    assert_eq!(&goodbye, b"BYE\n");
                }
            });
        }
    });
    let closer = closer as *mut fw_closer;
    let done = wait_finished(closer, (THREADS * EACH) as u64);
    assert_eq!(done.started, (THREADS * EACH) as u64);
    assert_eq!(done.finished, (THREADS * EACH) as u64);
    assert_eq!(done.peer_closed, (THREADS * EACH) as u64);
    assert_eq!(done.time_wait_us, 0);
    // SAFETY: a live closer.
    assert_eq!(
        unsafe { fw_closer_ending_count(closer, FW_ENDING_PEER_CLOSED) },
        (THREADS * EACH) as u64
    );
    // SAFETY: a live closer, freed once.
    assert_eq!(unsafe { fw_closer_free(closer, 1000) }, FW_OK);
    assert_eq!(OUTCOMES.load(Ordering::SeqCst), THREADS * EACH);
}

#[test]
fn an_ipv6_connection_is_taken_too() {
    let Ok(listener) = TcpListener::bind("[::1]:0") else {
        farewell_testkit::support::tools::skip("an_ipv6_connection_is_taken_too", "no ::1 here");
        return;
    };
    let closer = closer(c"abort", None, std::ptr::null_mut());
    let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let fd = listener.accept().unwrap().0.into_raw_fd();
    // SAFETY: a live closer; `fd` is ours to hand over.
    assert_eq!(unsafe { fw_close(closer, fd, b"BYE\n".as_ptr(), 4) }, FW_OK);
    let done = wait_finished(closer, 1);
    assert_eq!(done.finished, 1);
    assert_eq!(done.we_reset, 1);
    // SAFETY: a live closer, freed once.
    assert_eq!(unsafe { fw_closer_free(closer, 1000) }, FW_OK);
}

/// A peer-first closer with `peer_time_wait` and `threshold`.
fn peer_first_closer(peer_time_wait: &CStr, threshold: u32) -> *mut fw_closer {
    let options = fw_options_new();
    let mut closer = std::ptr::null_mut();
    // SAFETY: `options` is live until freed below; `closer` is a valid out-pointer.
    unsafe {
        assert_eq!(
            fw_options_set_peer_time_wait(options, peer_time_wait.as_ptr()),
            FW_OK
        );
        assert_eq!(
            fw_options_set_heavy_client_threshold(options, threshold),
            FW_OK
        );
        assert_eq!(fw_closer_new(options, &mut closer), FW_OK);
        fw_options_free(options);
    }
    closer
}

/// Hands `n` connections over one after the other, each client reading the
/// goodbye and closing; waits until each has reported.
fn cooperative_clients(closer: *mut fw_closer, n: u64) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    for i in 1..=n {
        let mut client = TcpStream::connect(addr).unwrap();
        let fd = listener.accept().unwrap().0.into_raw_fd();
        // SAFETY: a live closer; `fd` is ours to hand over.
        assert_eq!(unsafe { fw_close(closer, fd, b"BYE\n".as_ptr(), 4) }, FW_OK);
        let mut got = [0u8; 4];
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        client.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"BYE\n");
        drop(client);
        assert_eq!(wait_finished(closer, i).finished, i);
    }
}

#[test]
fn heavy_client_across_descriptors_is_reset_after_its_fin() {
    // Each descriptor gets a closer of its own inside the library: the
    // threshold must still see one client.
    let closer = peer_first_closer(c"auto", 3);
    cooperative_clients(closer, 6);
    // SAFETY: a live closer.
    let (closed, reset) = unsafe {
        (
            fw_closer_ending_count(closer, FW_ENDING_PEER_CLOSED),
            fw_closer_ending_count(closer, FW_ENDING_RESET_AFTER_PEER_FIN),
        )
    };
    assert_eq!((closed, reset), (3, 3));
    // SAFETY: a live closer, freed once.
    assert_eq!(unsafe { fw_closer_free(closer, 1000) }, FW_OK);
}

#[test]
fn spare_resets_every_client_after_its_fin() {
    let closer = peer_first_closer(c"spare", 500);
    cooperative_clients(closer, 2);
    // SAFETY: a live closer.
    let reset = unsafe { fw_closer_ending_count(closer, FW_ENDING_RESET_AFTER_PEER_FIN) };
    assert_eq!(reset, 2);
    // SAFETY: a live closer, freed once.
    assert_eq!(unsafe { fw_closer_free(closer, 1000) }, FW_OK);
}

#[test]
fn peer_time_wait_refuses_unknown_names_and_other_policies() {
    let options = fw_options_new();
    let mut closer = std::ptr::null_mut();
    // SAFETY: `options` is live until freed; `closer` is a valid out-pointer.
    unsafe {
        assert_eq!(
            fw_options_set_peer_time_wait(options, c"sometimes".as_ptr()),
            FW_ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            fw_options_set_peer_time_wait(options, std::ptr::null()),
            FW_ERR_NULL
        );
        assert_eq!(
            fw_options_set_peer_time_wait(options, c"spare".as_ptr()),
            FW_OK
        );
        assert_eq!(fw_options_set_policy(options, c"plain".as_ptr()), FW_OK);
        assert_eq!(
            fw_closer_new(options, &mut closer),
            FW_ERR_INVALID_ARGUMENT,
            "spare means nothing to plain"
        );
        assert!(closer.is_null());
        fw_options_free(options);
    }
}
