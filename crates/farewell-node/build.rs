fn main() {
    // The link arguments a Node-API cdylib needs on each platform (on macOS,
    // `-undefined dynamic_lookup`; on Linux, nothing beyond the default).
    napi_build::setup();
}
