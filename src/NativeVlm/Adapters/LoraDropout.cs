using NativeVlm.Autograd;
using NativeVlm.Tensors;

namespace NativeVlm.Adapters;

/// <summary>
/// nn.Dropout on an adapter's input (inverted: kept values are divided by 1 − p), with the mask
/// drawn on the host from a seeded generator. Composed from existing ops: IndexCopy writes zeros
/// over the dropped elements (its backward passes the gradient of the kept ones only), then Scale.
/// A native dropout op would draw the mask on the device instead.
/// </summary>
internal static class LoraDropout
{
    /// <summary>x (any shape) → x with each element zeroed with probability p, the rest scaled by 1 / (1 − p).</summary>
    public static Tensor Apply(Tensor x, double p, Random random)
    {
        TensorScope scope = TensorScope.Current
            ?? throw new InvalidOperationException("adapter dropout runs inside a TensorScope (or a Tape) that owns its tensors");
        if (x.ElementCount > int.MaxValue)
        {
            throw new ArgumentException($"dropout: {x} has more elements than an int32 index can address");
        }
        // A gradient checkpoint's recompute must draw this mask again.
        Checkpoint.BeforeDrawing(random);
        var dropped = new List<int>();
        for (int i = 0; i < x.ElementCount; i++)
        {
            if (random.NextDouble() < p)
            {
                dropped.Add(i);
            }
        }
        Tensor kept = x;
        if (dropped.Count > 0)
        {
            // Index and zeros are read again by IndexCopy's backward: the scope keeps them alive.
            Tensor index = scope.Own(Tensor.FromArray(x.Context, dropped.ToArray(), dropped.Count));
            Tensor zeros = scope.Own(Tensor.Zeros(x.Context, DType.F32, dropped.Count, 1));
            kept = Ops.IndexCopy(x.Reshape(x.ElementCount, 1), zeros, index).Reshape(x.Shape.ToArray());
        }
        return Ops.Scale(kept, (float)(1 / (1 - p)));
    }
}
