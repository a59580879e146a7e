using NativeVlm.Interop;

namespace NativeVlm.Tensors;

/// <summary>Numbered as nvlm_device_kind.</summary>
public enum DeviceKind
{
    Cpu = 0,
    Cuda = 1,
}

/// <summary>
/// Numbered as nvlm_math_mode: how a context's dense products (matmul, linear, the LM head) and
/// attention treat their f32 operands. Bf16 rounds them to bf16 and accumulates in fp32, as torch's
/// bf16 autocast (HF's <c>bf16=True</c>) computes them; on CUDA that runs them on the tensor cores.
/// Tensors stay f32 in both; <see cref="Context.SavedActivationDType"/> says how the tape keeps activations.
/// </summary>
public enum MathMode
{
    F32 = 0,
    Bf16 = 1,
}

/// <summary>
/// One backend instance: a device, its stream and its caching allocator. Tensors belong to one
/// context; a process may hold several (a CPU and a CUDA one side by side, as parity tests do).
/// </summary>
public sealed class Context : IDisposable
{
    private DType _savedActivationDType = DType.F32;

    internal ContextHandle Handle { get; }

    public DeviceKind Kind { get; }

    public int DeviceIndex { get; }

    private Context(ContextHandle handle, DeviceKind kind, int deviceIndex)
    {
        Handle = handle;
        Kind = kind;
        DeviceIndex = deviceIndex;
    }

    public static Context Create(DeviceKind kind, int deviceIndex = 0)
    {
        Native.EnsureCompatible();
        Native.Check(NativeMethods.nvlm_context_create((int)kind, deviceIndex, out ContextHandle handle));
        return new Context(handle, kind, deviceIndex);
    }

    /// <summary>"cpu", "cuda" or "cuda:N", as the console host's --device takes it.</summary>
    public static Context Create(string device)
    {
        string[] parts = device.Split(':');
        DeviceKind kind = parts[0] switch
        {
            "cpu" => DeviceKind.Cpu,
            "cuda" => DeviceKind.Cuda,
            _ => throw new ArgumentException($"unknown device '{device}': expected cpu, cuda or cuda:N", nameof(device)),
        };
        int index = 0;
        if (parts.Length > 2 || (parts.Length == 2 && (kind == DeviceKind.Cpu || !int.TryParse(parts[1], out index) || index < 0)))
        {
            throw new ArgumentException($"bad device '{device}': expected cpu, cuda or cuda:N", nameof(device));
        }
        return Create(kind, index);
    }

    /// <summary>Devices of a kind that this build of the native library can use.</summary>
    public static int DeviceCount(DeviceKind kind)
    {
        Native.EnsureCompatible();
        Native.Check(NativeMethods.nvlm_device_count((int)kind, out int count));
        return count;
    }

    public MemoryStats Memory
    {
        get
        {
            Native.Check(NativeMethods.nvlm_context_memory_stats(Handle, out MemoryStats stats));
            return stats;
        }
    }

    /// <summary>The math mode of the ops queued from now on; a new context computes in <see cref="MathMode.F32"/>.</summary>
    public MathMode MathMode
    {
        get
        {
            Native.Check(NativeMethods.nvlm_context_math_mode(Handle, out int mode));
            return (MathMode)mode;
        }
        set => Native.Check(NativeMethods.nvlm_context_set_math_mode(Handle, (int)value));
    }

    /// <summary>
    /// How the tape keeps an activation its backward reads once the forward has let go of it: F32 (as it
    /// is, the default) or BF16 (rounded, half the bytes, as a bf16 model in transformers keeps it; the
    /// backward reads it widened back to f32). Statistics, indices and weights stay exact either way.
    /// </summary>
    public DType SavedActivationDType
    {
        get => _savedActivationDType;
        set => _savedActivationDType = value is DType.F32 or DType.BF16
            ? value
            : throw new ArgumentException($"activations are saved as F32 or BF16, not {value}", nameof(value));
    }

    /// <summary>
    /// transformers' <c>bf16=True</c> when <paramref name="bf16"/>: bf16 math (<see cref="MathMode.Bf16"/>) and
    /// activations saved as bf16; otherwise f32 for both, the defaults.
    /// </summary>
    public void SetBf16MixedPrecision(bool bf16)
    {
        MathMode = bf16 ? MathMode.Bf16 : MathMode.F32;
        SavedActivationDType = bf16 ? DType.BF16 : DType.F32;
    }

    public void ResetPeakMemory() => Native.Check(NativeMethods.nvlm_context_reset_peak(Handle));

    public void Synchronize() => Native.Check(NativeMethods.nvlm_context_synchronize(Handle));

    /// <summary>
    /// Opens a named profiler range on this context's stream (NVTX on CUDA, shown by Nsight Systems;
    /// nothing on the CPU) that closes when the result is disposed: <c>using (ctx.Range("text.layers.3")) { ... }</c>.
    /// Ranges nest. The models open them around their forward code only: backward runs later, from
    /// the tape, outside every range.
    /// </summary>
    public ProfileRange Range(string name)
    {
        Native.Check(NativeMethods.nvlm_range_push(Handle, name));
        return new ProfileRange(this);
    }

    public override string ToString() => Kind == DeviceKind.Cpu ? "cpu" : $"cuda:{DeviceIndex}";

    /// <summary>Releases this reference; the native context lives on until its last buffer is freed.</summary>
    public void Dispose() => Handle.Dispose();
}

/// <summary>An open <see cref="Context.Range"/>; Dispose pops it.</summary>
public readonly struct ProfileRange : IDisposable
{
    // Null in default(ProfileRange), which never pushed anything.
    private readonly Context? _context;

    internal ProfileRange(Context context) => _context = context;

    public void Dispose()
    {
        if (_context != null)
        {
            Native.Check(NativeMethods.nvlm_range_pop(_context.Handle));
        }
    }
}
