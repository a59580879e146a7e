using NativeVlm.Autograd;
using NativeVlm.Interop;

namespace NativeVlm.Tensors;

/// <summary>
/// A contiguous row-major array in one context's memory. Several tensors may view one storage
/// (<see cref="Reshape"/>, <see cref="Detach"/>); the buffer is freed when the last view is
/// disposed. Tensors made by ops belong to the innermost <see cref="TensorScope"/>, if any;
/// tensors made by the factories below belong to the caller.
/// </summary>
public sealed class Tensor : IDisposable
{
    private readonly long[] _shape;
    private bool _disposed;

    public Context Context { get; }

    public DType DType { get; }

    public ReadOnlySpan<long> Shape => _shape;

    public int Rank => _shape.Length;

    public long ElementCount { get; }

    public long ByteCount => ElementCount * DType.SizeInBytes();

    /// <summary>Leaf tensors with this set collect gradients in <see cref="Grad"/>; op outputs inherit it.</summary>
    public bool RequiresGrad { get; set; }

    /// <summary>d(loss)/d(this), same shape, allocated by the first backward that reaches this tensor.</summary>
    public Tensor? Grad { get; internal set; }

    /// <summary>The tape node that produced this tensor; null for leaves.</summary>
    internal Node? GradFn { get; set; }

    internal Storage Storage { get; }

    internal BufferHandle Buffer => Storage.Handle;

    private Tensor(Context context, DType dtype, long[] shape, Storage storage)
    {
        Context = context;
        DType = dtype;
        _shape = shape;
        ElementCount = CountElements(shape);
        Storage = storage;
    }

    public long Dim(int axis) => _shape[axis < 0 ? _shape.Length + axis : axis];

    // ---- factories (caller-owned) ----------------------------------------------------------

    public static Tensor Zeros(Context context, DType dtype, params long[] shape)
    {
        Tensor t = Allocate(context, dtype, shape);
        Native.Check(NativeMethods.nvlm_buffer_zero(t.Buffer));
        return t;
    }

    public static Tensor FromArray(Context context, float[] data, params long[] shape) =>
        FromSpan<float>(context, DType.F32, data, shape);

    public static Tensor FromArray(Context context, int[] data, params long[] shape) =>
        FromSpan<int>(context, DType.I32, data, shape);

    public static Tensor FromArray(Context context, byte[] data, params long[] shape) =>
        FromSpan<byte>(context, DType.U8, data, shape);

    /// <summary>bf16 values given as their raw 16-bit patterns.</summary>
    public static Tensor FromBf16Bits(Context context, ushort[] bits, params long[] shape) =>
        FromSpan<ushort>(context, DType.BF16, bits, shape);

    private static unsafe Tensor FromSpan<T>(Context context, DType dtype, ReadOnlySpan<T> data, long[] shape)
        where T : unmanaged
    {
        long count = CountElements(shape);
        if (count != data.Length)
        {
            throw new ArgumentException($"{data.Length} values do not fill shape [{string.Join(", ", shape)}] ({count} elements)");
        }
        Tensor t = Allocate(context, dtype, shape);
        fixed (T* src = data)
        {
            Native.Check(NativeMethods.nvlm_buffer_upload(t.Buffer, 0, src, t.ByteCount));
        }
        return t;
    }

    /// <summary>Uninitialised memory; ops fill it. Registered with the current scope.</summary>
    internal static Tensor Empty(Context context, DType dtype, params long[] shape)
    {
        Tensor t = Allocate(context, dtype, shape);
        TensorScope.Current?.Own(t);
        return t;
    }

    private static Tensor Allocate(Context context, DType dtype, long[] shape)
    {
        long[] copy = (long[])shape.Clone();
        return new Tensor(context, dtype, copy, new Storage(context, dtype, CountElements(copy)));
    }

    private static long CountElements(long[] shape)
    {
        long count = 1;
        foreach (long d in shape)
        {
            if (d < 0)
            {
                throw new ArgumentException($"negative dimension in shape [{string.Join(", ", shape)}]");
            }
            count *= d;
        }
        return count;
    }

    // ---- reading back ----------------------------------------------------------------------

    public float[] ToFloatArray() => Download<float>(DType.F32);

    public int[] ToInt32Array() => Download<int>(DType.I32);

    public byte[] ToByteArray() => Download<byte>(DType.U8);

    public ushort[] ToBf16Bits() => Download<ushort>(DType.BF16);

    private unsafe T[] Download<T>(DType expected) where T : unmanaged
    {
        if (DType != expected)
        {
            throw new InvalidOperationException($"tensor is {DType}, not {expected}");
        }
        var result = new T[ElementCount];
        fixed (T* dst = result)
        {
            Native.Check(NativeMethods.nvlm_buffer_download(Buffer, 0, dst, ByteCount));
        }
        return result;
    }

    // ---- views -----------------------------------------------------------------------------

    /// <summary>The same elements under another shape (one dimension may be -1). Differentiable.</summary>
    public Tensor Reshape(params long[] shape)
    {
        long[] resolved = ResolveShape(shape);
        var view = new Tensor(Context, DType, resolved, Storage.AddView());
        TensorScope.Current?.Own(view);
        Ops.RecordReshape(view, this);
        return view;
    }

    /// <summary>A view of the same storage, cut from the tape: no gradient flows through it.</summary>
    public Tensor Detach()
    {
        var view = new Tensor(Context, DType, (long[])_shape.Clone(), Storage.AddView());
        TensorScope.Current?.Own(view);
        return view;
    }

    private long[] ResolveShape(long[] shape)
    {
        long[] resolved = (long[])shape.Clone();
        int inferred = Array.IndexOf(resolved, -1L);
        if (inferred >= 0)
        {
            long known = 1;
            for (int i = 0; i < resolved.Length; i++)
            {
                if (i != inferred) known *= resolved[i];
            }
            resolved[inferred] = known == 0 ? 0 : ElementCount / known;
        }
        if (CountElements(resolved) != ElementCount)
        {
            throw new ArgumentException(
                $"cannot reshape [{string.Join(", ", _shape)}] to [{string.Join(", ", shape)}]: element counts differ");
        }
        return resolved;
    }

    public override string ToString() => $"Tensor({DType}, [{string.Join(", ", _shape)}], {Context})";

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        Grad?.Dispose();
        Grad = null;
        GradFn = null;
        Storage.ReleaseView();
    }
}

/// <summary>
/// A native buffer shared by the views of one tensor and by the tape nodes whose backward reads it
/// (<see cref="Hold"/>); freed when the last view and the last hold let go. When the last view goes
/// while nodes still hold it, none of them exactly (activations, not statistics or weights), and its
/// context saves activations as bf16 (<see cref="Context.SavedActivationDType"/>), it is narrowed to a
/// bf16 copy: half the bytes, as transformers keeps a bf16 model's activations. The first read after
/// that widens it back to f32, so a backward sees each value rounded to bf16 and the forward, which
/// ran before, sees none rounded.
/// </summary>
internal sealed class Storage
{
    private readonly Context _context;
    private readonly DType _dtype;
    private readonly long _elements;
    private BufferHandle? _buffer;   // the values in _dtype; null while narrowed
    private BufferHandle? _narrowed; // their bf16 rounding, while narrowed
    private int _views = 1;
    private int _holds;
    private int _exactHolds;

    internal Storage(Context context, DType dtype, long elements)
    {
        _context = context;
        _dtype = dtype;
        _elements = elements;
        _buffer = Allocate(dtype);
    }

    internal BufferHandle Handle
    {
        get
        {
            lock (this)
            {
                if (_buffer == null && _narrowed == null)
                {
                    throw new ObjectDisposedException(nameof(Tensor), "the tensor's storage was freed: no view or backward holds it");
                }
                if (_buffer == null)
                {
                    Widen();
                }
                return _buffer!;
            }
        }
    }

    internal Storage AddView()
    {
        lock (this)
        {
            _views++;
            return this;
        }
    }

    internal void ReleaseView()
    {
        lock (this)
        {
            _views--;
            if (_views == 0 && _holds > 0)
            {
                NarrowIfOnlyActivationHolds();
            }
            FreeIfUnused();
        }
    }

    /// <summary>
    /// A tape node will read these values in its backward. <paramref name="exact"/>: it needs them
    /// as they are (statistics, indices, weights); otherwise their bf16 rounding will do.
    /// </summary>
    internal void Hold(bool exact)
    {
        lock (this)
        {
            _holds++;
            _exactHolds += exact ? 1 : 0;
        }
    }

    /// <summary>
    /// The node's backward has run (or never will). A storage the backward widened stays f32 until its
    /// last hold goes: the nodes reading one tensor sit close together on the tape, so narrowing it
    /// again in between would only add casts.
    /// </summary>
    internal void ReleaseHold(bool exact)
    {
        lock (this)
        {
            _holds--;
            _exactHolds -= exact ? 1 : 0;
            FreeIfUnused();
        }
    }

    private void FreeIfUnused()
    {
        if (_views + _holds == 0)
        {
            _buffer?.Dispose();
            _narrowed?.Dispose();
            _buffer = _narrowed = null;
        }
    }

    // The forward is past these values and only backwards will read them.
    private void NarrowIfOnlyActivationHolds()
    {
        if (_exactHolds == 0 && _buffer != null && _dtype == DType.F32 && _context.SavedActivationDType == DType.BF16)
        {
            _narrowed = Allocate(DType.BF16);
            Cast(_narrowed, DType.BF16, _buffer, DType.F32);
            _buffer.Dispose();
            _buffer = null;
        }
    }

    private void Widen()
    {
        _buffer = Allocate(DType.F32);
        Cast(_buffer, DType.F32, _narrowed!, DType.BF16);
        _narrowed!.Dispose();
        _narrowed = null;
    }

    private void Cast(BufferHandle dst, DType dstType, BufferHandle src, DType srcType) =>
        Native.Check(NativeMethods.nvlm_cast(_context.Handle, dst, (int)dstType, src, (int)srcType, _elements));

    private BufferHandle Allocate(DType dtype)
    {
        Native.Check(NativeMethods.nvlm_buffer_alloc(_context.Handle, _elements * dtype.SizeInBytes(), out BufferHandle handle));
        handle.BindContext(_context.Handle);
        return handle;
    }
}
