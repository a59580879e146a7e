using System.Globalization;
using NativeVlm.Models;

namespace NativeVlm.Adapters;

/// <summary>
/// The counts of PEFT v0.13.2's get_nb_trainable_parameters(): trainable = the adapter tensors,
/// all = every parameter of the PeftModel (the base model's, each once, plus the adapters').
/// PEFT counts a bitsandbytes 4-bit weight as its unquantised element count, so a QLoRA model
/// gives the same numbers as an f32 one.
/// </summary>
public sealed record PeftParameterCounts(long Trainable, long All)
{
    /// <summary>
    /// The counts for <paramref name="adapter"/> on the model <paramref name="model"/> describes,
    /// from the configs alone: no tensor is built. Per adapted Linear(in, out) of rank r:
    /// r·in (lora_A) + out·r (lora_B) + out (DoRA's magnitude).
    /// </summary>
    public static PeftParameterCounts FromConfig(Idefics3Config model, LoraConfig adapter)
    {
        IReadOnlyList<Nn.LinearShape> linears = Idefics3Model.LinearShapes(model);
        HashSet<string> targets = adapter.TargetModules.Select(linears.Select(l => l.Name).ToList(), adapter.Source).ToHashSet();
        long trainable = 0;
        foreach (Nn.LinearShape linear in linears.Where(l => targets.Contains(l.Name)))
        {
            int rank = adapter.RankAndAlpha(linear.Name).Rank;
            trainable += rank * (linear.InFeatures + linear.OutFeatures) + (adapter.UseDora ? linear.OutFeatures : 0);
        }
        return new PeftParameterCounts(trainable, Idefics3Model.ParameterCount(model) + trainable);
    }

    /// <summary>
    /// The counts of a built model and the adapters on it. The base count comes from the model's
    /// config, not its tensors: an NF4 weight's tensors hold packed codes and quantisation state,
    /// not one element per parameter.
    /// </summary>
    public static PeftParameterCounts Of(Idefics3Model model, LoraAdapterSet adapters)
    {
        long trainable = adapters.Parameters.Sum(p => p.ElementCount);
        return new PeftParameterCounts(trainable, Idefics3Model.ParameterCount(model.Config) + trainable);
    }

    public double TrainablePercent => 100.0 * Trainable / All;

    /// <summary>print_trainable_parameters()' line: "trainable params: 11,269,248 || all params: 2,257,542,128 || trainable%: 0.4992".</summary>
    public override string ToString() => string.Format(CultureInfo.InvariantCulture,
        "trainable params: {0:N0} || all params: {1:N0} || trainable%: {2:F4}", Trainable, All, TrainablePercent);
}
