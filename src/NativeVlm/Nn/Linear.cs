using NativeVlm.Models;
using NativeVlm.Tensors;

namespace NativeVlm.Nn;

/// <summary>What a Linear module is, without its tensors: enough to match adapter targets and count parameters.</summary>
/// <param name="Name">The module's full path in the Hugging Face checkpoint ("model.text_model.layers.0.self_attn.q_proj").</param>
public sealed record LinearShape(string Name, long InFeatures, long OutFeatures, bool HasBias);

/// <summary>
/// Adds to a <see cref="Linear"/>'s base output (a LoRA or DoRA adapter, see NativeVlm.Adapters).
/// </summary>
public interface ILinearAdapter
{
    /// <summary>False while adapters are switched off (e.g. for the DPO reference model): the module then computes its base output only.</summary>
    bool IsEnabled { get; }

    /// <summary>
    /// True when the adapter scales the base projection x·Wᵀ but not the bias (DoRA): the module then
    /// takes its product without the bias, adds the bias on its own, and passes both.
    /// </summary>
    bool ScalesProjection { get; }

    /// <summary>
    /// x [..., in], the base output x·Wᵀ + bias [..., out] and, when the module has it at hand, the
    /// projection x·Wᵀ without the bias (the base output itself when there is no bias; null when the
    /// module has a bias and the adapter does not scale the projection) → the adapted output [..., out].
    /// </summary>
    Tensor Forward(Tensor x, Tensor baseOutput, Tensor? projection);
}

/// <summary>
/// torch.nn.Linear as a module of a model: a frozen base weight [out, in] (dense, or quantised
/// behind <see cref="ILinearWeight"/>), an optional bias [out], and optionally an adapter that adds
/// to the output. <see cref="Name"/> is the module's full checkpoint path: PEFT matches its
/// target_modules against it and prefixes the adapter's tensor names with it.
/// </summary>
public sealed class Linear : IDisposable
{
    public Linear(string name, ILinearWeight weight, Tensor? bias)
    {
        if (bias != null && (bias.Rank != 1 || bias.Dim(0) != weight.OutFeatures))
        {
            throw new ArgumentException($"{name}: bias must be [{weight.OutFeatures}], got {bias}", nameof(bias));
        }
        Name = name;
        Weight = weight;
        Bias = bias;
    }

    public string Name { get; }

    public ILinearWeight Weight { get; private set; }

    /// <summary>[out], or null for a bias-free Linear.</summary>
    public Tensor? Bias { get; }

    public long InFeatures => Weight.InFeatures;

    public long OutFeatures => Weight.OutFeatures;

    public LinearShape Shape => new(Name, InFeatures, OutFeatures, Bias != null);

    /// <summary>The attached adapter; its owner (an adapter set) attaches, detaches and disposes it.</summary>
    public ILinearAdapter? Adapter { get; private set; }

    /// <summary>Loads <c>weight</c> [out, in] (and <c>bias</c> [out]) of the module <paramref name="w"/> is scoped to.</summary>
    public static Linear Load(Weights w, long inFeatures, long outFeatures, bool hasBias) => new(
        w.ModuleName,
        new DenseWeight(w.Get("weight", outFeatures, inFeatures)),
        hasBias ? w.Get("bias", outFeatures) : null);

    /// <summary>x [..., in] → [..., out]: x·Wᵀ + bias, plus the adapter's contribution while it is enabled.</summary>
    public Tensor Forward(Tensor x)
    {
        if (Adapter is not { IsEnabled: true } adapter)
        {
            return Weight.Forward(x, Bias);
        }
        if (Bias == null || !adapter.ScalesProjection)
        {
            Tensor y = Weight.Forward(x, Bias);
            return adapter.Forward(x, y, Bias == null ? y : null);
        }
        // One product without the bias serves as the adapter's projection and, with the bias added, as the
        // base output: neither a second product nor a [rows, out] copy of the bias.
        Tensor projection = Weight.Forward(x, null);
        return adapter.Forward(x, Ops.BiasAdd(projection, Bias), projection);
    }

    public void Attach(ILinearAdapter adapter)
    {
        if (Adapter != null)
        {
            throw new InvalidOperationException($"{Name} already has an adapter; one adapter per module is supported");
        }
        Adapter = adapter;
    }

    public void Detach() => Adapter = null;

    /// <summary>Swaps the base weight for another of the same shape (a merged or a quantised one) and disposes the old one.</summary>
    public void ReplaceWeight(ILinearWeight weight)
    {
        if (weight.InFeatures != InFeatures || weight.OutFeatures != OutFeatures)
        {
            throw new ArgumentException(
                $"{Name}: the new weight is [{weight.OutFeatures}, {weight.InFeatures}], the module's [{OutFeatures}, {InFeatures}]", nameof(weight));
        }
        ILinearWeight old = Weight;
        Weight = weight;
        old.Dispose();
    }

    /// <summary>The base tensors under their names relative to the module ("weight", "bias").</summary>
    public IEnumerable<(string Name, Tensor Tensor)> NamedParameters =>
        Bias == null ? Weight.NamedParameters : Weight.NamedParameters.Append(("bias", Bias));

    public IEnumerable<Tensor> Parameters => NamedParameters.Select(p => p.Tensor);

    public void Dispose()
    {
        Weight.Dispose();
        Bias?.Dispose();
    }
}
