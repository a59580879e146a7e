using NativeVlm.Tensors;
using Xunit;

namespace NativeVlm.Tests;

/// <summary>
/// One test body per backend. Tests take the backend name as a theory row:
/// <code>
/// [SkippableTheory]
/// [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
/// public void Something(string backend) { using Context ctx = Backends.Open(backend); ... }
/// </code>
/// The CUDA row is skipped only where this machine has no NVIDIA GPU. Where it has one, the CUDA
/// context must open: a library built without CUDA, a broken driver or any other failure fails
/// the test instead of hiding behind a skip.
/// </summary>
public static class Backends
{
    public static TheoryData<string> All => new() { "cpu", "cuda" };

    /// <summary>An NVIDIA GPU is visible to this machine (device node or driver present).</summary>
    public static bool GpuPresent => File.Exists("/dev/nvidia0") || Directory.Exists("/proc/driver/nvidia");

    /// <summary>
    /// Opens a context of the named backend ("cpu" or "cuda"). For "cuda" on a machine without a
    /// GPU the calling test is skipped with that reason; with a GPU it never skips.
    /// </summary>
    public static Context Open(string name)
    {
        switch (name)
        {
            case "cpu":
                return Context.Create(DeviceKind.Cpu);
            case "cuda":
                Skip.IfNot(GpuPresent, "no NVIDIA GPU on this machine (/dev/nvidia0 absent)");
                return Context.Create(DeviceKind.Cuda);
            default:
                throw new ArgumentException($"unknown backend '{name}': expected cpu or cuda", nameof(name));
        }
    }
}
