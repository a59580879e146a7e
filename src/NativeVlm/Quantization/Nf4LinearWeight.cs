using NativeVlm.Nn;
using NativeVlm.Tensors;

namespace NativeVlm.Quantization;

/// <summary>
/// A <see cref="Linear"/>'s frozen base weight held in NF4 (bitsandbytes' Linear4bit of a QLoRA
/// model): the forward runs <see cref="Ops.Nf4Linear"/>, which dequantises block by block and never
/// holds W whole; the gradient reaches the input only. Owns its <see cref="Nf4Weight"/>.
/// </summary>
public sealed class Nf4LinearWeight : ILinearWeight
{
    public Nf4LinearWeight(Nf4Weight weight) => Weight = weight;

    public Nf4Weight Weight { get; }

    /// <summary>Quantises a dense f32 weight [out, in]; the dense one stays the caller's.</summary>
    public static Nf4LinearWeight Quantize(Tensor dense) => new(Nf4Weight.Quantize(dense));

    public Context Context => Weight.Context;

    public long InFeatures => Weight.Columns;

    public long OutFeatures => Weight.Rows;

    /// <summary>
    /// x·dequant(W)ᵀ, then the bias added as bitsandbytes' matmul_4bit adds it. The NF4 op takes no
    /// bias, so a recorded bias add follows (the bias would get its gradient if it were trainable).
    /// </summary>
    public Tensor Forward(Tensor x, Tensor? bias)
    {
        Tensor y = Ops.Nf4Linear(x, Weight);
        return bias == null ? y : Ops.BiasAdd(y, bias);
    }

    public Tensor ToDense() => Weight.Dequantize();

    /// <summary>
    /// The tensors under the names bitsandbytes' Linear4bit state dict gives them (QuantState.as_dict):
    /// the packed codes as "weight", the 8-bit absmax, the nested absmax and the absmax code. bitsandbytes
    /// keeps the nested offset as a float inside its packed quant_state entry; here it is a tensor.
    /// </summary>
    public IEnumerable<(string Name, Tensor Tensor)> NamedParameters =>
    [
        ("weight", Weight.Packed),
        ("weight.absmax", Weight.AbsmaxQuantized),
        ("weight.nested_absmax", Weight.NestedAbsmax),
        ("weight.nested_quant_map", Weight.AbsmaxCode),
        ("weight.nested_offset", Weight.Offset),
    ];

    public void Dispose() => Weight.Dispose();
}
