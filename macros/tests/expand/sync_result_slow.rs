#[traced(args(path), result, slow_ms = 50)]
fn read_config<P: AsRef<Path> + Debug>(path: P, mut cache: impl Cache) -> io::Result<String> {
    if let Some(text) = cache.get(path.as_ref()) {
        return Ok(text);
    }
    std::fs::read_to_string(path)
}
