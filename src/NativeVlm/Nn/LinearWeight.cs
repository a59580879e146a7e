using NativeVlm.Tensors;

namespace NativeVlm.Nn;

/// <summary>
/// The frozen base weight W [out, in] of a <see cref="Linear"/>: dense f32 (<see cref="DenseWeight"/>)
/// or a quantised form (NF4) that never holds W whole between calls. Base weights get no gradient;
/// the gradient flows through them to the input only.
/// </summary>
public interface ILinearWeight : IDisposable
{
    /// <summary>Where the weight lives; the module's inputs and adapters live there too.</summary>
    Context Context { get; }

    long InFeatures { get; }

    long OutFeatures { get; }

    /// <summary>x [..., in] → x·Wᵀ + bias [..., out]; bias [out] or null.</summary>
    Tensor Forward(Tensor x, Tensor? bias);

    /// <summary>
    /// W as dense f32 [out, in], for what needs the whole matrix (merging, quantising, writing):
    /// the stored tensor itself for a dense weight, a dequantised copy owned by the current
    /// <see cref="Autograd.TensorScope"/> for a quantised one. The caller never disposes it.
    /// </summary>
    Tensor ToDense();

    /// <summary>The tensors that hold W, under their checkpoint names relative to the module ("weight").</summary>
    IEnumerable<(string Name, Tensor Tensor)> NamedParameters { get; }
}

/// <summary>An f32 weight [out, in] as the checkpoint stores it.</summary>
public sealed class DenseWeight : ILinearWeight
{
    public DenseWeight(Tensor tensor)
    {
        if (tensor.Rank != 2 || tensor.DType != DType.F32)
        {
            throw new ArgumentException($"a dense linear weight is f32 [out, in], got {tensor}", nameof(tensor));
        }
        Tensor = tensor;
    }

    /// <summary>[out, in]</summary>
    public Tensor Tensor { get; }

    public Context Context => Tensor.Context;

    public long InFeatures => Tensor.Dim(1);

    public long OutFeatures => Tensor.Dim(0);

    public Tensor Forward(Tensor x, Tensor? bias) => Ops.Linear(x, Tensor, bias);

    public Tensor ToDense() => Tensor;

    public IEnumerable<(string Name, Tensor Tensor)> NamedParameters => [("weight", Tensor)];

    public void Dispose() => Tensor.Dispose();
}
