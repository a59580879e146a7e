using System.Globalization;
using CommandLine;
using CommandLine.Text;
using NativeVlm.Adapters;
using NativeVlm.Checks;
using NativeVlm.IO;
using NativeVlm.Models;
using NativeVlm.Tensors;
using NativeVlm.Vision;

namespace NativeVlm.Cli;

[Verb("inspect", HelpText = "Architecture, parameter counts (with an adapter: PEFT's trainable/all line), memory of the weights per " +
                            "precision and of training the adapter, tokens per image for the processor settings, and validation findings " +
                            "(exit 1 when one is an error). --check_image_path runs the model to prove that images reach the decoder.")]
public sealed class InspectOptions
{
    [Usage(ApplicationAlias = "nativevlm")]
    public static IEnumerable<Example> Examples =>
    [
        new("A snapshot with the adapter it will be trained with", new InspectOptions
        {
            Model = "tests/fixtures/tiny-idefics3", TargetModules = ["q_proj", "v_proj"], LoraR = 4, UseDora = true,
        }),
        new("Prove that images reach a stitched model's decoder", new InspectOptions
        {
            Model = "tests/fixtures/tiny-qwen3-smvl", CheckImagePath = true, Inputs = "tests/fixtures/tiny-qwen3-smvl/inputs.safetensors",
        }),
    ];

    [Option("model", HelpText = "A Hugging Face snapshot folder: its config.json, and its safetensors headers, tokenizer, chat template and " +
                                "processor files are checked against it. One of --model and --config is required.")]
    public string? Model { get; set; }

    [Option("config", HelpText = "An Idefics3 config.json alone (instead of --model): architecture, counts, memory and the config's own findings. One of --model and --config is required.")]
    public string? Config { get; set; }

    [Option("adapter_config", HelpText = "A PEFT adapter_config.json, or a folder holding one, to count and size its adapter (instead of the " +
                                         "--lora_r/--lora_alpha/--lora_target_modules/--use_dora flags). Default: no adapter.")]
    public string? AdapterConfig { get; set; }

    [Option("lora_r", HelpText = "Adapter rank, a positive integer; with --lora_target_modules. Default 8 (PEFT's).")]
    public int? LoraR { get; set; }

    [Option("lora_alpha", HelpText = "Adapter alpha, a number; with --lora_target_modules. Default 8 (PEFT's).")]
    public double? LoraAlpha { get; set; }

    [Option("lora_target_modules", Separator = ',', HelpText = "Comma-separated module names PEFT matches by suffix (e.g. q_proj,k_proj,v_proj,o_proj," +
                                                          "gate_proj,up_proj,down_proj) or all-linear. Default: none (no adapter).")]
    public IEnumerable<string> TargetModules { get; set; } = [];

    [Option("use_dora", HelpText = "true: DoRA, which adds a magnitude vector per adapted module; with --lora_target_modules. Default false.")]
    public bool? UseDora { get; set; }

    [Option("image_size", Separator = ',', HelpText = "Comma-separated image sizes WIDTHxHEIGHT (e.g. 1536x1024,640x480) to count tiles and " +
                                                      "tokens for; needs --model with a preprocessor_config.json. Default: the largest size the " +
                                                      "processor settings allow and 512x512.")]
    public IEnumerable<string> ImageSize { get; set; } = [];

    [Option("check_image_path", HelpText = "true: load the weights on --device, run the model on one prompt with two random images and check " +
                                           "that the logits before the first image token are unchanged, those from it on change, and the LM " +
                                           "loss has a non-zero connector gradient; exit 1 otherwise. Needs --model. Default false.")]
    public bool? CheckImagePath { get; set; }

    [Option("inputs", HelpText = "For --check_image_path on a snapshot without a tokenizer: an inputs safetensors file as compare takes it " +
                                 "(input_ids, pixel_values, pixel_attention_mask, optionally labels); its first sample's ids are the prompt " +
                                 "and its pixels are replaced by random ones. Default: the snapshot's tokenizer and chat template.")]
    public string? Inputs { get; set; }

    [Option("device", Default = "cpu", HelpText = "Where --check_image_path runs the model: " + DeviceOption.Help)]
    public string Device { get; set; } = "cpu";
}

/// <summary>
/// nativevlm inspect: what a model's files describe and whether they agree, computed from config.json,
/// the safetensors headers and the processor files without building a tensor; with
/// --check_image_path, the model itself shows that images reach its decoder. Every check is printed
/// (ok, warning or error) so that a model can be inspected whatever state it is in; the exit code is
/// 1 when any is an error.
/// </summary>
public static class InspectCommand
{
    public static int Run(InspectOptions options)
    {
        string configPath = ConfigPath(options);
        LoraConfig? adapter = AdapterFrom(options);
        IReadOnlyList<(int Width, int Height)> imageSizes = options.ImageSize.Select(ParseImageSize).ToList();
        if (options.Model == null && (imageSizes.Count > 0 || options.CheckImagePath == true || options.Inputs != null))
        {
            throw new ArgumentException("--image_size, --check_image_path and --inputs need --model (a snapshot folder)");
        }
        if (options.Inputs != null && options.CheckImagePath != true)
        {
            throw new ArgumentException("--inputs is the prompt of --check_image_path true");
        }
        DeviceOption.Parse(options.Device);
        Idefics3Config config = Idefics3Config.Load(configPath);
        // Resolved before anything is printed: targets that match no module are a flag error (exit 2), not half an output.
        IReadOnlyList<string> adapted = adapter == null
            ? []
            : adapter.TargetModules.Select(Idefics3Model.LinearShapes(config).Select(l => l.Name).ToList(), adapter.Source);
        SnapshotProcessor? processor = options.Model == null ? null : SnapshotProcessor.Load(options.Model, config);
        Idefics3Inputs? inputs = options.Inputs == null ? null : ReadFirstSample(options.Inputs, config);
        if (imageSizes.Count > 0 && processor!.ImageProcessor == null)
        {
            throw new ArgumentException($"--image_size: {options.Model} has no {Idefics3ImageProcessorConfig.FileName} to process images with");
        }
        if (options.CheckImagePath == true && inputs == null && ImagePathCheck.MissingPromptFiles(processor!) is { } missing)
        {
            throw new ArgumentException($"--check_image_path: {missing}");
        }

        Console.WriteLine($"config: {configPath}");
        PrintArchitecture(config);
        IReadOnlyList<ExpectedTensor> tensors = SnapshotTensors.Of(config);
        PrintParameters(tensors);
        if (adapter != null)
        {
            PrintAdapter(config, adapter, adapted, options.AdapterConfig != null ? adapter.Source : "the --lora_target_modules flags");
        }
        PrintMemory(MemoryEstimate.Of(config, adapter), Idefics3Model.LinearShapes(config).Count);
        if (processor != null)
        {
            PrintTokensPerImage(processor, imageSizes);
        }

        var findings = SnapshotFindings.OfConfig(configPath, config).ToList();
        if (options.Model != null)
        {
            findings.AddRange(WeightFindings(options.Model, config));
            findings.AddRange(SnapshotFindings.OfProcessor(processor!, config));
        }
        if (inputs != null)
        {
            findings.Add(SnapshotFindings.OfInputs(options.Inputs!, inputs, config));
        }
        PrintFindings(findings);
        bool passed = findings.All(f => f.Severity != FindingSeverity.Error);
        if (options.CheckImagePath == true)
        {
            passed &= CheckImagePath(options, processor!, inputs);
        }
        return passed ? 0 : 1;
    }

    private static string ConfigPath(InspectOptions options)
    {
        if (options.Model != null && options.Config != null)
        {
            throw new ArgumentException("--model and --config exclude each other (a snapshot's config.json is read from the folder)");
        }
        if (options.Model != null)
        {
            return Directory.Exists(options.Model)
                ? Path.Combine(options.Model, Idefics3Config.FileName)
                : throw new ArgumentException($"--model {options.Model}: no such folder");
        }
        return options.Config ?? throw new ArgumentException("inspect needs --model DIR or --config FILE");
    }

    private static LoraConfig? AdapterFrom(InspectOptions options)
    {
        string[] targets = options.TargetModules.ToArray();
        bool fromFlags = targets.Length > 0 || options.LoraR != null || options.LoraAlpha != null || options.UseDora != null;
        if (options.AdapterConfig != null)
        {
            return fromFlags
                ? throw new ArgumentException("--adapter_config and the --lora_r/--lora_alpha/--lora_target_modules/--use_dora flags exclude each other")
                : LoraConfig.Load(options.AdapterConfig);
        }
        if (!fromFlags)
        {
            return null;
        }
        if (targets.Length == 0)
        {
            throw new ArgumentException("--lora_r, --lora_alpha and --use_dora need --lora_target_modules");
        }
        if (options.LoraR is <= 0)
        {
            throw new ArgumentException($"--lora_r {options.LoraR}: the rank must be a positive integer");
        }
        return LoraConfig.Create(Adapters.TargetModules.FromArgument(targets), r: options.LoraR ?? 8, loraAlpha: options.LoraAlpha ?? 8,
            useDora: options.UseDora ?? false);
    }

    /// <summary>"1536x1024" → (1536, 1024).</summary>
    private static (int Width, int Height) ParseImageSize(string value)
    {
        string[] sides = value.Split('x');
        return sides.Length == 2
               && int.TryParse(sides[0], NumberStyles.None, CultureInfo.InvariantCulture, out int width) && width > 0
               && int.TryParse(sides[1], NumberStyles.None, CultureInfo.InvariantCulture, out int height) && height > 0
            ? (width, height)
            : throw new ArgumentException($"--image_size {value}: expected WIDTHxHEIGHT in pixels, e.g. 1536x1024");
    }

    private static Idefics3Inputs ReadFirstSample(string path, Idefics3Config config)
    {
        using SafeTensorsReader reader = SafeTensorsReader.Open(path);
        return ImagePathCheck.FirstSample(Idefics3Inputs.Read(reader, ""), config.ImageTokenId);
    }

    private static void PrintArchitecture(Idefics3Config config)
    {
        VisionConfig v = config.Vision;
        TextConfig t = config.Text;
        Console.WriteLine($"vision: {v.NumHiddenLayers} layers × {v.HiddenSize} hidden / {v.IntermediateSize} intermediate, " +
            $"{v.NumAttentionHeads} heads (head_dim {v.HeadDim}), patch {v.PatchSize}, image {v.ImageSize} px, " +
            $"{v.PatchesPerSide}×{v.PatchesPerSide} = {v.NumPatches} patches");
        Console.WriteLine($"connector: pixel shuffle scale {config.ScaleFactor}, {config.ConnectorInputSize} → {t.HiddenSize}");
        Console.WriteLine($"text: {t.ModelType.ToString().ToLowerInvariant()}, {t.NumHiddenLayers} layers × {t.HiddenSize} hidden / " +
            $"{t.IntermediateSize} intermediate, {t.NumAttentionHeads} heads / {t.NumKeyValueHeads} kv heads, head_dim {t.HeadDim}, " +
            $"vocab {t.VocabSize}, tied {(config.TieWordEmbeddings ? "yes" : "no")}");
        Console.WriteLine($"image tokens per tile: {config.ImageSeqLen} ({v.NumPatches} patches / scale {config.ScaleFactor}²), image_token_id {config.ImageTokenId}");
    }

    private static void PrintParameters(IReadOnlyList<ExpectedTensor> tensors)
    {
        Console.WriteLine("parameters:");
        foreach (IGrouping<string, ExpectedTensor> component in tensors.GroupBy(t => t.Component))
        {
            Console.WriteLine($"  {component.Key,-18}{component.Sum(t => t.ElementCount),16:N0}");
        }
        if (tensors.All(t => t.Component != SnapshotTensors.LmHeadComponent))
        {
            Console.WriteLine($"  {SnapshotTensors.LmHeadComponent,-18}{"tied to the token embeddings",16}");
        }
        Console.WriteLine($"  {"total",-18}{tensors.Sum(t => t.ElementCount),16:N0}");
    }

    private static void PrintAdapter(Idefics3Config config, LoraConfig adapter, IReadOnlyList<string> adapted, string origin)
    {
        string targets = adapter.TargetModules switch
        {
            { Names: { } names } => string.Join(", ", names),
            { Pattern: Adapters.TargetModules.AllLinear } => Adapters.TargetModules.AllLinear,
            { Pattern: var pattern } => $"/{pattern}/",
        };
        Console.WriteLine($"adapter: {(adapter.UseDora ? "DoRA" : "LoRA")} r={adapter.R} alpha={adapter.LoraAlpha.ToString(CultureInfo.InvariantCulture)}" +
            $"{(adapter.UseRslora ? " (rsLoRA)" : "")} on {targets} ({origin})");
        int Count(string component) => adapted.Count(n => SnapshotTensors.ComponentOf(n) == component);
        Console.WriteLine($"adapted modules: {adapted.Count} (vision {Count(SnapshotTensors.VisionComponent)}, " +
            $"connector {Count(SnapshotTensors.ConnectorComponent)}, text {Count(SnapshotTensors.TextComponent)})");
        Console.WriteLine(PeftParameterCounts.FromConfig(config, adapter));
    }

    private static void PrintMemory(MemoryEstimate memory, int linearCount)
    {
        Console.WriteLine("memory of the weights (activations are not counted: they depend on batch, sequence length, image split and checkpointing):");
        Console.WriteLine($"  f32         {Size(memory.Float32)}");
        Console.WriteLine($"  bf16        {Size(memory.BFloat16)}");
        Console.WriteLine($"  nf4 + f32   {Size(memory.Nf4WithFloat32)}  ({linearCount} Linear weights, {memory.QuantizedElements:N0} parameters, in NF4 with " +
                          "double quantisation; LM head, embeddings, norms, biases and patch convolution f32, as --quant nf4 loads them)");
        Console.WriteLine($"  nf4 + bf16  {Size(memory.Nf4WithBFloat16)}  (the same with the rest in bf16, as transformers' load_in_4bit with torch_dtype bfloat16)");
        if (memory.AdapterParameters > 0)
        {
            Console.WriteLine($"training the adapter ({memory.AdapterParameters:N0} parameters, all f32): weights {Size(memory.AdapterWeights).Trim()}, " +
                              $"gradients {Size(memory.AdapterGradients).Trim()}, AdamW moments {Size(memory.AdamWMoments).Trim()}; " +
                              $"total {Size(memory.AdapterTraining).Trim()} on top of the weights");
        }
    }

    /// <summary>GiB, or MiB below one GiB (a tiny test model would read 0.00 GiB).</summary>
    private static string Size(long bytes) => bytes >= 1L << 30
        ? string.Format(CultureInfo.InvariantCulture, "{0,8:F2} GiB", bytes / (double)(1L << 30))
        : string.Format(CultureInfo.InvariantCulture, "{0,8:F2} MiB", bytes / (double)(1L << 20));

    private static void PrintTokensPerImage(SnapshotProcessor processor, IReadOnlyList<(int Width, int Height)> asked)
    {
        if (processor.ImageProcessor == null)
        {
            Console.WriteLine($"tokens per image: no {Idefics3ImageProcessorConfig.FileName} in the snapshot");
            return;
        }
        Idefics3ImageProcessorConfig settings = processor.ImageProcessor.Config;
        string resize = settings.LongestEdge is int edge ? $"longest edge {edge}" : $"{settings.Size!.Value.Width}x{settings.Size!.Value.Height}";
        Console.WriteLine($"tokens per image (resize to {resize}, tiles of {settings.MaxImageSize}, splitting {(settings.DoImageSplitting ? "on" : "off")}, " +
                          $"image_seq_len {processor.Prompt.ImageSeqLen}{(processor.Tokenizer == null ? "; no tokenizer.json, so no token counts of the text" : "")}):");
        foreach ((int width, int height) in asked.Count > 0 ? asked : ImageTokenCounts.RepresentativeSizes(settings))
        {
            ImageTokenCount count = ImageTokenCounts.Count(processor, width, height);
            string tiles = count.Rows == 0 && count.Cols == 0 ? "global image only" : $"{count.Rows}×{count.Cols} tiles + global";
            string text = count.ExpansionTokens is int expansion
                ? $", expansion {expansion} tokens{(count.PromptTokens is int prompt ? $", user prompt \"{ImageTokenCounts.UserText}\" {prompt} tokens" : "")}"
                : "";
            Console.WriteLine($"  {width}x{height}: {tiles} = {count.Frames} frame{(count.Frames == 1 ? "" : "s")}, {count.ImageTokens} image tokens{text}");
        }
    }

    /// <summary>The weights' findings; a snapshot whose safetensors cannot be opened is one error finding.</summary>
    private static IEnumerable<Finding> WeightFindings(string snapshot, Idefics3Config config)
    {
        try
        {
            using SafeTensorsReader reader = SafeTensorsReader.Open(snapshot);
            return SnapshotFindings.OfWeights(reader, config).ToList();
        }
        catch (Exception e) when (e is SafeTensorsException or IOException)
        {
            return [Finding.Error(SafeTensorsReader.SingleFileName, e.Message)];
        }
    }

    private static void PrintFindings(List<Finding> findings)
    {
        Console.WriteLine("checks:");
        findings.ForEach(finding => Console.WriteLine($"  {finding}"));
        int errors = findings.Count(f => f.Severity == FindingSeverity.Error), warnings = findings.Count(f => f.Severity == FindingSeverity.Warning);
        Console.WriteLine(errors + warnings == 0 ? "findings: none" : $"findings: {errors} error{(errors == 1 ? "" : "s")}, {warnings} warning{(warnings == 1 ? "" : "s")}");
    }

    /// <summary>Runs <see cref="ImagePathCheck"/> and prints what it measured; true when images reach the decoder.</summary>
    private static bool CheckImagePath(InspectOptions options, SnapshotProcessor processor, Idefics3Inputs? fromFile)
    {
        (Idefics3Inputs first, Idefics3Inputs second) = fromFile == null
            ? (ImagePathCheck.FromProcessor(processor, ImagePathCheck.FirstImageSeed), ImagePathCheck.FromProcessor(processor, ImagePathCheck.SecondImageSeed))
            : (ImagePathCheck.WithRandomPixels(fromFile, ImagePathCheck.FirstImageSeed), ImagePathCheck.WithRandomPixels(fromFile, ImagePathCheck.SecondImageSeed));
        using Context ctx = DeviceOption.Open(options.Device);
        using Idefics3Model model = Idefics3Model.Load(options.Model!, ctx);
        ImagePathResult result = ImagePathCheck.Run(model, first, second);

        string source = fromFile == null ? "the chat template" : $"{options.Inputs}'s first sample";
        Console.WriteLine($"image path on {options.Device}: one prompt of {first.SeqLen} tokens ({source}) with two random images " +
                          $"(seeds {ImagePathCheck.FirstImageSeed}, {ImagePathCheck.SecondImageSeed}); {result.ImageTokens} image tokens " +
                          $"for {result.ImageFeatures} image features{(result.FirstImagePosition is int p ? $", the first at position {p}" : "")}");
        if (result.MaxLogitChangeBeforeImage is double before && result.MaxLogitChangeFromImage is double from && result.ConnectorGradientNorm is double gradient)
        {
            Console.WriteLine($"  largest logit change before the first image token: {Number(before)} (must be 0)");
            Console.WriteLine($"  largest logit change from the first image token on: {Number(from)} (must be > 0)");
            Console.WriteLine($"  connector gradient norm of the LM loss: {Number(gradient)} (must be finite and > 0)");
        }
        Console.WriteLine(result.Passed ? "image path: ok, images reach the decoder" : $"image path: FAIL, {result.Failure}");
        return result.Passed;
    }

    private static string Number(double value) => value.ToString("G6", CultureInfo.InvariantCulture);
}
