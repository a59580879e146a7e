using System.Diagnostics;
using NativeVlm.Adapters;
using NativeVlm.Models;
using NativeVlm.Quantization;
using NativeVlm.Tensors;

namespace NativeVlm.Cli;

/// <summary>
/// The snapshot and adapter a verb runs (compare, generate), loaded and announced the same way: the
/// parameters, decoder type and load time; with --quant nf4 the bytes saved; with an adapter its kind,
/// the modules it adapts and PEFT's trainable/all line.
/// </summary>
internal static class ModelLoading
{
    public static Idefics3Model Model(string snapshot, Context context, BaseWeightQuantization quantization)
    {
        var clock = Stopwatch.StartNew();
        Idefics3Model model = Idefics3Model.Load(snapshot, context, quantization);
        Console.WriteLine($"loaded {snapshot} ({Idefics3Model.ParameterCount(model.Config):N0} parameters, " +
            $"text {model.Config.Text.ModelType}) in {clock.Elapsed.TotalSeconds:F1} s");
        if (model.Quantization != null)
        {
            Console.WriteLine(model.Quantization);
        }
        return model;
    }

    /// <summary>The PEFT adapter folder <paramref name="folder"/> on <paramref name="model"/>; null when none is given.</summary>
    public static LoraAdapterSet? Adapter(Idefics3Model model, string? folder)
    {
        if (folder == null)
        {
            return null;
        }
        LoraAdapterSet adapters = LoraAdapterSet.Load(model.Linears, folder);
        Console.WriteLine($"adapter {folder}: {(adapters.Config.UseDora ? "DoRA" : "LoRA")} on {adapters.Adapters.Count} modules; " +
            PeftParameterCounts.Of(model, adapters));
        return adapters;
    }
}
