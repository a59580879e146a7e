using NativeVlm.Interop;
using NativeVlm.Tensors;

namespace NativeVlm.Quantization;

/// <summary>
/// A frozen weight [n, k] in 4-bit NormalFloat with double quantisation, bit for bit as bitsandbytes
/// 0.47 holds a QLoRA base weight (<c>quantize_4bit(w, blocksize=64, quant_type="nf4",
/// compress_statistics=True)</c>; the layout is written out in native/src/nf4.h): two 4-bit codes a
/// byte, one 8-bit absmax per <see cref="BlockSize"/> weights, and the nested state that quantised
/// those absmax values. It lives in one context and owns its buffers. Nothing differentiates it:
/// <see cref="Ops.Nf4Linear"/> passes gradients to its input only.
/// </summary>
public sealed class Nf4Weight : IDisposable
{
    /// <summary>Weights per absmax (nf4.h's kBlock).</summary>
    public const int BlockSize = 64;

    /// <summary>Absmax values per nested absmax (nf4.h's kNestedBlock).</summary>
    public const int NestedBlockSize = 256;

    /// <summary>Entries of the absmax code, bitsandbytes' dynamic map (nf4.h's kDynamicCodes).</summary>
    public const int AbsmaxCodeSize = 256;

    private Nf4Weight(long rows, long columns, Tensor packed, Tensor absmaxQuantized, Tensor nestedAbsmax,
        Tensor offset, Tensor absmaxCode)
    {
        Rows = rows;
        Columns = columns;
        Packed = packed;
        AbsmaxQuantized = absmaxQuantized;
        NestedAbsmax = nestedAbsmax;
        Offset = offset;
        AbsmaxCode = absmaxCode;
    }

    public Context Context => Packed.Context;

    /// <summary>n: the output features of the linear layer.</summary>
    public long Rows { get; }

    /// <summary>k: the input features of the linear layer.</summary>
    public long Columns { get; }

    /// <summary>U8 [ceil(n·k / 2)]: the 4-bit codes of the row-major weight, element 2i in the high nibble.</summary>
    public Tensor Packed { get; }

    /// <summary>U8 [blocks], blocks = ceil(n·k / 64): each block's absmax as an index into <see cref="AbsmaxCode"/>.</summary>
    public Tensor AbsmaxQuantized { get; }

    /// <summary>F32 [ceil(blocks / 256)]: the absmax of each 256 (absmax − offset) values.</summary>
    public Tensor NestedAbsmax { get; }

    /// <summary>F32 [1]: the mean of the absmax values, subtracted before they were quantised.</summary>
    public Tensor Offset { get; }

    /// <summary>F32 [256]: bitsandbytes' signed dynamic map, ascending.</summary>
    public Tensor AbsmaxCode { get; }

    /// <summary>Bytes this weight occupies: codes, quantised absmax and the nested state.</summary>
    public long ByteCount =>
        Packed.ByteCount + AbsmaxQuantized.ByteCount + NestedAbsmax.ByteCount + Offset.ByteCount + AbsmaxCode.ByteCount;

    /// <summary>Bytes the same weight takes in f32, to report the memory quantisation saves.</summary>
    public long Float32ByteCount => Rows * Columns * sizeof(float);

    /// <summary>Quantises an f32 weight [n, k] (n, k > 0) in its context (nvlm_nf4_quantize).</summary>
    public static Nf4Weight Quantize(Tensor weight)
    {
        const string op = "nf4_quantize";
        Ops.RequireDType(op, "weight", weight, DType.F32);
        if (weight.Rank != 2 || weight.Dim(0) == 0 || weight.Dim(1) == 0)
        {
            throw new ArgumentException($"{op}: weight must be [n, k] with n, k > 0, got {weight}", nameof(weight));
        }
        long rows = weight.Dim(0), columns = weight.Dim(1), numel = rows * columns;
        long blocks = (numel + BlockSize - 1) / BlockSize;
        Context ctx = weight.Context;

        var owned = new List<Tensor>();
        Tensor Own(Tensor t)
        {
            owned.Add(t);
            return t;
        }
        try
        {
            var result = new Nf4Weight(rows, columns,
                Own(Tensor.Zeros(ctx, DType.U8, (numel + 1) / 2)),
                Own(Tensor.Zeros(ctx, DType.U8, blocks)),
                Own(Tensor.Zeros(ctx, DType.F32, (blocks + NestedBlockSize - 1) / NestedBlockSize)),
                Own(Tensor.Zeros(ctx, DType.F32, 1)),
                Own(Tensor.Zeros(ctx, DType.F32, AbsmaxCodeSize)));
            Native.Check(NativeMethods.nvlm_nf4_quantize(ctx.Handle, result.Packed.Buffer, result.AbsmaxQuantized.Buffer,
                result.NestedAbsmax.Buffer, result.Offset.Buffer, result.AbsmaxCode.Buffer, BufferHandle.Null,
                weight.Buffer, rows, columns));
            return result;
        }
        catch
        {
            owned.ForEach(t => t.Dispose());
            throw;
        }
    }

    /// <summary>
    /// The dequantised weight, f32 [n, k] (nvlm_nf4_dequantize), for merging adapters and for checks. Like
    /// an op output it belongs to the current <see cref="Autograd.TensorScope"/>, if any; it is not recorded.
    /// </summary>
    public Tensor Dequantize()
    {
        Tensor w = Tensor.Empty(Context, DType.F32, Rows, Columns);
        Native.Check(NativeMethods.nvlm_nf4_dequantize(Context.Handle, w.Buffer, Packed.Buffer, AbsmaxQuantized.Buffer,
            NestedAbsmax.Buffer, Offset.Buffer, AbsmaxCode.Buffer, Rows, Columns));
        return w;
    }

    public override string ToString() => $"Nf4Weight([{Rows}, {Columns}], {Context})";

    public void Dispose()
    {
        Packed.Dispose();
        AbsmaxQuantized.Dispose();
        NestedAbsmax.Dispose();
        Offset.Dispose();
        AbsmaxCode.Dispose();
    }
}
