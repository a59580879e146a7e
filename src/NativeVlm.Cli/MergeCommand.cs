using System.Diagnostics;
using CommandLine;
using CommandLine.Text;
using NativeVlm.Adapters;
using NativeVlm.Models;
using NativeVlm.Quantization;
using NativeVlm.Tensors;

namespace NativeVlm.Cli;

[Verb("merge", HelpText = "Fold a PEFT LoRA/DoRA adapter into a model's base weights and write a full Hugging Face snapshot (f32).")]
public sealed class MergeOptions
{
    [Usage(ApplicationAlias = "nativevlm")]
    public static IEnumerable<Example> Examples =>
    [
        UsageExample.Of("Fold a DoRA adapter into its base model", new MergeOptions
        {
            Model = "tests/fixtures/tiny-idefics3", Adapter = "tests/fixtures/tiny-idefics3-dora", OutputDir = "merged",
        }),
    ];

    [Option("model", Required = true, HelpText = "Hugging Face snapshot folder of the base model (config.json + safetensors).")]
    public string Model { get; set; } = "";

    [Option("adapter", Required = true, HelpText = "PEFT adapter folder (adapter_config.json, adapter_model.safetensors).")]
    public string Adapter { get; set; } = "";

    [Option("output_dir", Required = true, HelpText = "Folder for the merged snapshot: config.json, model.safetensors, tokenizer and processor files.")]
    public string OutputDir { get; set; } = "";

    [Option("quant", Default = BaseWeightQuantization.None, HelpText = "Base weights: none, or nf4 to merge into the NF4-dequantised base weights, as the adapter was trained on them under QLoRA.")]
    public BaseWeightQuantization Quant { get; set; }

    [Option("force", HelpText = "true: write into an output folder that is not empty, replacing files of the same names (default false).")]
    public bool? Force { get; set; }

    [Option("device", Default = "cpu", HelpText = DeviceOption.Help)]
    public string Device { get; set; } = "cpu";
}

/// <summary>nativevlm merge: PEFT's merge_and_unload followed by save_pretrained, in one step.</summary>
public static class MergeCommand
{
    public static int Run(MergeOptions options)
    {
        if (options.Force != true && Directory.Exists(options.OutputDir) && Directory.EnumerateFileSystemEntries(options.OutputDir).Any())
        {
            throw new ArgumentException($"the output folder {options.OutputDir} is not empty (--force writes into it)");
        }
        var clock = Stopwatch.StartNew();
        using Context ctx = DeviceOption.Open(options.Device);
        using Idefics3Model model = Idefics3Model.Load(options.Model, ctx, options.Quant);
        if (model.Quantization != null)
        {
            Console.WriteLine(model.Quantization);
        }
        using LoraAdapterSet adapters = LoraAdapterSet.Load(model.Linears, options.Adapter);
        int merged = adapters.Adapters.Count;
        string kind = adapters.Config.UseDora ? "DoRA" : "LoRA";
        adapters.MergeAndUnload();
        SnapshotWriter.Save(model, options.Model, options.OutputDir);
        Console.WriteLine($"merge: {kind} adapter {options.Adapter} folded into {merged} modules of {options.Model}; " +
            $"wrote {options.OutputDir} ({clock.Elapsed.TotalSeconds:F1} s)");
        return 0;
    }
}
