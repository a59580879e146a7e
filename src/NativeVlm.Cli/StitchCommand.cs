using System.Diagnostics;
using CommandLine;
using CommandLine.Text;
using NativeVlm.Stitching;

namespace NativeVlm.Cli;

[Verb("stitch", HelpText = "Build a new vision-language snapshot (the Qwen3-SmVL recipe): a SmolVLM2/Idefics3 vision tower, a new connector and a Qwen3 decoder with its tokenizer.")]
public sealed class StitchOptions
{
    [Usage(ApplicationAlias = "nativevlm")]
    public static IEnumerable<Example> Examples =>
    [
        UsageExample.Of("Stitch SmolVLM2's vision tower onto Qwen3-0.6B", new StitchOptions
        {
            Vision = "SmolVLM2-256M-Video-Instruct", Text = "Qwen3-0.6B", OutputDir = "qwen3-smvl",
        }),
    ];

    [Option("vision", Required = true, HelpText = "Idefics3/SmolVLM snapshot folder (config.json with model_type idefics3 or smolvlm, safetensors, preprocessor_config.json) whose vision tower, image processor and processor settings are taken.")]
    public string Vision { get; set; } = "";

    [Option("text", Required = true, HelpText = "Qwen3ForCausalLM snapshot folder (config.json with model_type qwen3, safetensors, tokenizer.json with <|image_pad|>, <|vision_start|>, <|vision_pad|>, tokenizer_config.json) whose decoder, LM head and tokenizer are taken.")]
    public string Text { get; set; } = "";

    [Option("output_dir", Required = true, HelpText = "Folder for the stitched snapshot (config.json, generation_config.json, model.safetensors, tokenizer, chat template, processor files); created if missing, must be empty unless --force true.")]
    public string OutputDir { get; set; } = "";

    [Option("seed", Default = 0UL, HelpText = "Seed of the new connector's weights, drawn U(-1/sqrt(in), 1/sqrt(in)) as torch.nn.Linear initialises them, from NativeVlm's xoshiro256** generator (torch's generator is not reproduced, so a seed does not give torch's numbers). Default 0.")]
    public ulong Seed { get; set; }

    [Option("force", HelpText = "true: write into an output folder that is not empty, replacing files of the same names (default false).")]
    public bool? Force { get; set; }
}

/// <summary>nativevlm stitch: the stitched-model recipe, its output checked for consistent ids before it is reported.</summary>
public static class StitchCommand
{
    public static int Run(StitchOptions options)
    {
        var clock = Stopwatch.StartNew();
        StitchReport report = ModelStitcher.Stitch(options.Vision, options.Text, options.OutputDir, options.Seed, options.Force ?? false);
        StitchedSnapshotIds ids = report.Ids;
        Console.WriteLine($"vision tower: {report.VisionTensors} tensors copied from {options.Vision} ({ModelStitcher.VisionPrefix}*)");
        Console.WriteLine($"decoder:      {report.TextTensors} tensors copied from {options.Text} ({ModelStitcher.Qwen3Prefix}X as {ModelStitcher.TextPrefix}X)");
        Console.WriteLine($"connector:    {StitchedSnapshotCheck.ConnectorName} [{string.Join(", ", ids.ConnectorShape)}] " +
            $"drawn U(-{report.ConnectorBound:G4}, {report.ConnectorBound:G4}), seed {options.Seed}");
        Console.WriteLine($"lm_head:      {(ids.TiedLmHead ? $"tied to {StitchedSnapshotCheck.EmbedTokensName} (not stored)" : $"{StitchedSnapshotCheck.LmHeadName} copied")}");
        Console.WriteLine($"ids:          image token {ids.ImageToken} = {ids.ImageTokenId}, eos {ids.EosToken} = {ids.EosTokenId}, vocab_size {ids.VocabSize} " +
            "(config.json, generation_config.json and tokenizer files checked to agree)");
        Console.WriteLine($"stitch: wrote {options.OutputDir} ({string.Join(", ", report.Files)}) in {clock.Elapsed.TotalSeconds:F1} s");
        return 0;
    }
}
