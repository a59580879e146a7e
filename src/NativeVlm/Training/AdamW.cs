using NativeVlm.Tensors;

namespace NativeVlm.Training;

/// <summary>
/// torch.optim.AdamW over a fixed list of fp32 parameters: first and second moments and a
/// step count per parameter. A parameter without a gradient is skipped and its count stays,
/// as torch does.
/// </summary>
public sealed class AdamW : IDisposable
{
    private readonly Tensor[] _parameters;
    private readonly Tensor[] _m;
    private readonly Tensor[] _v;
    private readonly long[] _steps;

    public float Beta1 { get; init; } = 0.9f;

    public float Beta2 { get; init; } = 0.999f;

    public float Epsilon { get; init; } = 1e-8f;

    public float WeightDecay { get; init; } = 0.01f;

    public AdamW(IEnumerable<Tensor> parameters)
    {
        _parameters = parameters.ToArray();
        _m = _parameters.Select(p => Tensor.Zeros(p.Context, DType.F32, p.Shape.ToArray())).ToArray();
        _v = _parameters.Select(p => Tensor.Zeros(p.Context, DType.F32, p.Shape.ToArray())).ToArray();
        _steps = new long[_parameters.Length];
    }

    /// <summary>
    /// Updates every parameter from its gradient with learning rate <paramref name="lr"/>: the parameters
    /// with a gradient, grouped by their next step count, one <see cref="Ops.AdamWMultiTensorStep"/> per
    /// group (a single call, one kernel launch on CUDA, unless some parameter once missed a gradient).
    /// </summary>
    public void Update(float lr)
    {
        IEnumerable<IGrouping<long, int>> groups = Enumerable.Range(0, _parameters.Length)
            .Where(i => _parameters[i].Grad != null)
            .GroupBy(i => _steps[i] + 1)
            .OrderBy(g => g.Key);
        foreach (IGrouping<long, int> group in groups)
        {
            int[] members = group.ToArray();
            Ops.AdamWMultiTensorStep(members.Select(i => _parameters[i]).ToArray(),
                members.Select(i => _parameters[i].Grad!).ToArray(), members.Select(i => _m[i]).ToArray(),
                members.Select(i => _v[i]).ToArray(), lr, Beta1, Beta2, Epsilon, WeightDecay, group.Key);
            foreach (int i in members)
            {
                _steps[i] = group.Key;
            }
        }
    }

    /// <summary>Parameter <paramref name="index"/>'s first and second moments (same shape) and step count.</summary>
    public (Tensor ExpAvg, Tensor ExpAvgSq, long Step) State(int index) => (_m[index], _v[index], _steps[index]);

    /// <summary>Restores parameter <paramref name="index"/>'s moments and step count (a resumed run).</summary>
    public void SetState(int index, float[] expAvg, float[] expAvgSq, long step)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(step);
        TensorUpload.Upload(_m[index], expAvg);
        TensorUpload.Upload(_v[index], expAvgSq);
        _steps[index] = step;
    }

    /// <summary>Drops every parameter's gradient, as optimizer.zero_grad(set_to_none=True).</summary>
    public void ZeroGrad()
    {
        foreach (Tensor p in _parameters)
        {
            p.Grad?.Dispose();
            p.Grad = null;
        }
    }

    public void Dispose()
    {
        foreach (Tensor t in _m.Concat(_v))
        {
            t.Dispose();
        }
    }
}
