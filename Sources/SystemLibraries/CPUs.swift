import CToolboxShim
import Foundation

/// The processors this process may use.
public enum CPUs {
    /// The CPUs in this process's affinity mask (what Slurm's --cpus-per-task gives a job step),
    /// else the machine's.
    public static var usable: Int {
        let count = Int(tbx_usable_cpus())
        return count > 0 ? count : ProcessInfo.processInfo.activeProcessorCount
    }
}
