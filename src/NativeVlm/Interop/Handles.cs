using System.Runtime.InteropServices;

namespace NativeVlm.Interop;

/// <summary>An nvlm_context*. Destroyed when the last buffer of the context is gone.</summary>
public sealed class ContextHandle : SafeHandle
{
    public ContextHandle() : base(IntPtr.Zero, ownsHandle: true) { }

    public override bool IsInvalid => handle == IntPtr.Zero;

    protected override bool ReleaseHandle() => NativeMethods.nvlm_context_destroy(handle) == 0;
}

/// <summary>An nvlm_buffer*. Holds a reference on its context so the context outlives it.</summary>
public sealed class BufferHandle : SafeHandle
{
    /// <summary>Passed for an optional buffer argument: the native side sees a null pointer.</summary>
    public static readonly BufferHandle Null = new();

    private ContextHandle? _context;

    public BufferHandle() : base(IntPtr.Zero, ownsHandle: true) { }

    public override bool IsInvalid => handle == IntPtr.Zero;

    /// <summary>Called once after a successful nvlm_buffer_alloc.</summary>
    internal void BindContext(ContextHandle context)
    {
        bool added = false;
        context.DangerousAddRef(ref added);
        _context = context;
    }

    protected override bool ReleaseHandle()
    {
        bool ok = NativeMethods.nvlm_buffer_free(handle) == 0;
        _context?.DangerousRelease();
        return ok;
    }
}
