import Glibc

/// Start-up timings for people chasing a slow start: with `NS_ENTER_TIMINGS=1` in the
/// environment, ns-enter prints how long each step took on stderr
/// (`ns-enter: timing: mounts 0.41 ms`).
public enum Timings {
    nonisolated(unsafe) static var enabled = getenv("NS_ENTER_TIMINGS").map { String(cString: $0) == "1" } ?? false
    nonisolated(unsafe) static var last = now()

    static func now() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Double(time.tv_sec) * 1000 + Double(time.tv_nsec) / 1_000_000
    }

    /// Reports the time since the previous mark.
    public static func mark(_ step: String) {
        guard enabled else { return }
        let current = now()
        let text = "ns-enter: timing: \(step) \(((current - last) * 100).rounded() / 100) ms\n"
        _ = text.withCString { write(2, $0, strlen($0)) }
        last = current
    }
}
