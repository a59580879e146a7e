using System.Globalization;
using CommandLine;
using NativeVlm.Adapters;
using NativeVlm.IO;
using NativeVlm.Models;
using NativeVlm.Nn;

namespace NativeVlm.Cli;

[Verb("inspect", HelpText = "Architecture, parameter counts (with an adapter: PEFT's trainable/all line), memory of the base " +
                            "weights per precision and findings about the config, from config.json alone (no weights needed).")]
public sealed class InspectOptions
{
    [Option("model", HelpText = "A Hugging Face snapshot folder: its config.json, and its safetensors headers are checked against it.")]
    public string? Model { get; set; }

    [Option("config", HelpText = "An Idefics3 config.json (instead of --model).")]
    public string? Config { get; set; }

    [Option("adapter-config", HelpText = "A PEFT adapter_config.json, or a folder holding one (instead of the --lora-* flags).")]
    public string? AdapterConfig { get; set; }

    [Option("lora-r", HelpText = "Adapter rank (PEFT's default 8); with --target-modules.")]
    public int? LoraR { get; set; }

    [Option("lora-alpha", HelpText = "Adapter alpha (PEFT's default 8); with --target-modules.")]
    public double? LoraAlpha { get; set; }

    [Option("target-modules", Separator = ',', HelpText = "Module names PEFT matches by suffix, e.g. q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj.")]
    public IEnumerable<string> TargetModules { get; set; } = [];

    [Option("use-dora", HelpText = "DoRA: adds a magnitude vector per adapted module; with --target-modules.")]
    public bool UseDora { get; set; }
}

/// <summary>
/// nativevlm inspect: what a config.json describes, computed without building a tensor. Findings
/// (a config transformers accepts but that would misbehave, weights that disagree with the config)
/// are printed, not failed on, so that a model can be inspected whatever state it is in.
/// </summary>
public static class InspectCommand
{
    public static int Run(InspectOptions options)
    {
        string configPath = ConfigPath(options);
        Idefics3Config config = Idefics3Config.Load(configPath);
        LoraConfig? adapter = AdapterFrom(options);
        List<ExpectedTensor> tensors = ExpectedTensors(config);
        var findings = ConfigFindings(config).ToList();

        Console.WriteLine($"config: {configPath}");
        PrintArchitecture(config);
        PrintParameters(tensors);
        if (adapter != null)
        {
            PrintAdapter(config, adapter);
        }
        PrintMemory(config, tensors);
        if (options.Model != null)
        {
            findings.AddRange(WeightFindings(options.Model, config, tensors));
        }
        Console.WriteLine(findings.Count == 0 ? "findings: none" : $"findings ({findings.Count}):");
        findings.ForEach(finding => Console.WriteLine($"  - {finding}"));
        return 0;
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
        bool fromFlags = targets.Length > 0 || options.LoraR != null || options.LoraAlpha != null || options.UseDora;
        if (options.AdapterConfig != null)
        {
            return fromFlags
                ? throw new ArgumentException("--adapter-config and the --lora-r/--lora-alpha/--target-modules/--use-dora flags exclude each other")
                : LoraConfig.Load(options.AdapterConfig);
        }
        if (!fromFlags)
        {
            return null;
        }
        if (targets.Length == 0)
        {
            throw new ArgumentException("--lora-r, --lora-alpha and --use-dora need --target-modules");
        }
        return LoraConfig.Create(Adapters.TargetModules.FromNames(targets), r: options.LoraR ?? 8, loraAlpha: options.LoraAlpha ?? 8,
            useDora: options.UseDora);
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

    private static void PrintParameters(List<ExpectedTensor> tensors)
    {
        Console.WriteLine("parameters:");
        foreach (IGrouping<string, ExpectedTensor> component in tensors.GroupBy(t => t.Component))
        {
            Console.WriteLine($"  {component.Key,-18}{component.Sum(t => t.ElementCount),16:N0}");
        }
        if (tensors.All(t => t.Component != LmHeadComponent))
        {
            Console.WriteLine($"  {LmHeadComponent,-18}{"tied to the token embeddings",16}");
        }
        Console.WriteLine($"  {"total",-18}{tensors.Sum(t => t.ElementCount),16:N0}");
    }

    private static void PrintAdapter(Idefics3Config config, LoraConfig adapter)
    {
        IReadOnlyList<LinearShape> linears = Idefics3Model.LinearShapes(config);
        IReadOnlyList<string> adapted = adapter.TargetModules.Select(linears.Select(l => l.Name).ToList(), adapter.Source);
        string targets = adapter.TargetModules.Names is { } names ? string.Join(", ", names) : $"/{adapter.TargetModules.Pattern}/";
        Console.WriteLine($"adapter: {(adapter.UseDora ? "DoRA" : "LoRA")} r={adapter.R} alpha={adapter.LoraAlpha.ToString(CultureInfo.InvariantCulture)}" +
            $"{(adapter.UseRslora ? " (rsLoRA)" : "")} on {targets} ({adapter.Source})");
        Console.WriteLine($"adapted modules: {adapted.Count} (vision {adapted.Count(n => ComponentOf(n) == VisionComponent)}, " +
            $"connector {adapted.Count(n => ComponentOf(n) == ConnectorComponent)}, text {adapted.Count(n => ComponentOf(n) == TextComponent)})");
        Console.WriteLine(PeftParameterCounts.FromConfig(config, adapter));
    }

    private static void PrintMemory(Idefics3Config config, List<ExpectedTensor> tensors)
    {
        long parameters = tensors.Sum(t => t.ElementCount);
        // bitsandbytes' replace_with_bnb_linear quantises every nn.Linear but the LM head; the patch
        // convolution, embeddings, norms and Linear biases stay in the compute dtype.
        HashSet<string> quantised = Idefics3Model.LinearShapes(config).Select(l => $"{l.Name}.weight").ToHashSet();
        long nf4 = tensors.Sum(t => quantised.Contains(t.Name) ? Nf4Bytes(t.ElementCount) : 2 * t.ElementCount);
        Console.WriteLine("memory of the base weights:");
        Console.WriteLine($"  f32   {Size(4 * parameters)}");
        Console.WriteLine($"  bf16  {Size(2 * parameters)}");
        Console.WriteLine($"  nf4   {Size(nf4)}  (Linear weights in NF4 with double quantisation, the rest bf16)");
    }

    /// <summary>
    /// What bitsandbytes keeps for one NF4 weight of <paramref name="elements"/> values (as Nf4Weight.ByteCount):
    /// two codes a byte, an 8-bit absmax per 64 values, an f32 absmax per 256 of those, the f32 offset and the 256-entry f32 absmax code.
    /// </summary>
    private static long Nf4Bytes(long elements)
    {
        long blocks = Ceiling(elements, Quantization.Nf4Weight.BlockSize);
        return Ceiling(elements, 2) + blocks + sizeof(float) * (Ceiling(blocks, Quantization.Nf4Weight.NestedBlockSize) + 1 + Quantization.Nf4Weight.AbsmaxCodeSize);
    }

    private static long Ceiling(long value, long divisor) => (value + divisor - 1) / divisor;

    /// <summary>GiB, or MiB below one GiB (a tiny test model would read 0.00 GiB).</summary>
    private static string Size(long bytes) => bytes >= 1L << 30
        ? string.Format(CultureInfo.InvariantCulture, "{0,8:F2} GiB", bytes / (double)(1L << 30))
        : string.Format(CultureInfo.InvariantCulture, "{0,8:F2} MiB", bytes / (double)(1L << 20));

    /// <summary>Fields transformers loads without complaint but that break or silently change a run.</summary>
    private static IEnumerable<string> ConfigFindings(Idefics3Config config)
    {
        VisionConfig v = config.Vision;
        TextConfig t = config.Text;
        if (config.ImageTokenId < 0 || config.ImageTokenId >= t.VocabSize)
        {
            yield return $"image_token_id {config.ImageTokenId} is outside the text vocabulary (vocab_size {t.VocabSize}): " +
                         "no input token can be an image token, so images never reach the decoder";
        }
        if (v.ImageSize % v.PatchSize != 0)
        {
            yield return $"vision_config.image_size {v.ImageSize} is not a multiple of patch_size {v.PatchSize}: transformers truncates " +
                         $"to {v.PatchesPerSide} patches per side and ignores the last {v.ImageSize % v.PatchSize} pixels of each row and column";
        }
        if (t.TieWordEmbeddings != config.TieWordEmbeddings)
        {
            yield return $"text_config.tie_word_embeddings is {Json(t.TieWordEmbeddings)} but the top-level tie_word_embeddings is " +
                         $"{Json(config.TieWordEmbeddings)}; transformers v4.46.3 follows the top-level field";
        }
        foreach ((string field, int? id) in new[] { ("pad_token_id", t.PadTokenId), ("bos_token_id", t.BosTokenId) }
                     .Concat(t.EosTokenIds.Select(id => ("eos_token_id", (int?)id))))
        {
            if (id is < 0 || id >= t.VocabSize)
            {
                yield return $"text_config.{field} {id} is outside the vocabulary (vocab_size {t.VocabSize})";
            }
        }
    }

    private static string Json(bool value) => value ? "true" : "false";

    /// <summary>
    /// The snapshot's tensors against the ones the config implies, from the safetensors headers only
    /// (no tensor data is read, so this is cheap for a multi-GB model).
    /// </summary>
    private static IEnumerable<string> WeightFindings(string snapshot, Idefics3Config config, List<ExpectedTensor> expected)
    {
        using SafeTensorsReader reader = SafeTensorsReader.Open(snapshot);
        var findings = new List<string>();
        List<string> missing = expected.Where(t => !reader.Contains(t.Name)).Select(t => t.Name).ToList();
        List<string> misshapen = expected.Where(t => reader.Contains(t.Name) && !reader.GetInfo(t.Name).Shape.SequenceEqual(t.Shape))
            .Select(t => $"{t.Name} is [{string.Join(", ", reader.GetInfo(t.Name).Shape.ToArray())}], the config implies [{string.Join(", ", t.Shape)}]")
            .ToList();
        HashSet<string> expectedNames = expected.Select(t => t.Name).ToHashSet();
        List<string> unexpected = reader.Names.Where(n => !expectedNames.Contains(n)).Order(StringComparer.Ordinal).ToList();
        if (config.TieWordEmbeddings && unexpected.Remove(LmHeadWeight))
        {
            findings.Add($"tie_word_embeddings is true but the weights hold {LmHeadWeight}: transformers ignores it and uses the token embeddings");
        }
        if (missing.Count > 0)
        {
            findings.Add($"missing tensors ({missing.Count}): {string.Join(", ", missing)}");
        }
        if (misshapen.Count > 0)
        {
            findings.Add($"shapes that disagree with config.json ({misshapen.Count}): {string.Join("; ", misshapen)}");
        }
        if (unexpected.Count > 0)
        {
            findings.Add($"unexpected tensors ({unexpected.Count}): {string.Join(", ", unexpected)}");
        }
        string dtypes = string.Join(", ", reader.Names.GroupBy(n => reader.GetInfo(n).DType.HeaderName()).Select(g => $"{g.Key} ×{g.Count()}"));
        Console.WriteLine($"weights: {reader.SourcePath}: {reader.Names.Count} tensors ({dtypes}), " +
            $"{(findings.Count == 0 ? "every one as config.json implies" : "see findings")}");
        return findings;
    }

    private const string VisionComponent = "vision tower";
    private const string ConnectorComponent = "connector";
    private const string TextComponent = "text decoder";
    private const string EmbeddingsComponent = "token embeddings";
    private const string LmHeadComponent = "LM head";
    private const string LmHeadWeight = "lm_head.weight";

    private sealed record ExpectedTensor(string Name, long[] Shape)
    {
        public long ElementCount => Shape.Aggregate(1L, (product, dim) => product * dim);

        public string Component => ComponentOf(Name);
    }

    /// <summary>The part of the model a module or tensor belongs to, by its Hugging Face name.</summary>
    private static string ComponentOf(string name) => name switch
    {
        _ when name.StartsWith("model.vision_model.", StringComparison.Ordinal) => VisionComponent,
        _ when name.StartsWith("model.connector.", StringComparison.Ordinal) => ConnectorComponent,
        _ when name.StartsWith("model.text_model.embed_tokens.", StringComparison.Ordinal) => EmbeddingsComponent,
        _ when name.StartsWith("model.text_model.", StringComparison.Ordinal) => TextComponent,
        _ => LmHeadComponent,
    };

    /// <summary>
    /// Every tensor of the snapshot transformers would save for <paramref name="config"/>, in component
    /// order, with the shape the config implies: the Linear modules as Idefics3Model.LinearShapes
    /// lists them, plus the embeddings and norms the model's Load methods request.
    /// </summary>
    private static List<ExpectedTensor> ExpectedTensors(Idefics3Config config)
    {
        VisionConfig v = config.Vision;
        TextConfig t = config.Text;
        var tensors = new List<ExpectedTensor>
        {
            new("model.vision_model.embeddings.patch_embedding.weight", [v.HiddenSize, v.NumChannels, v.PatchSize, v.PatchSize]),
            new("model.vision_model.embeddings.patch_embedding.bias", [v.HiddenSize]),
            new("model.vision_model.embeddings.position_embedding.weight", [v.NumPatches, v.HiddenSize]),
        };
        IEnumerable<string> visionNorms = Enumerable.Range(0, v.NumHiddenLayers)
            .SelectMany(i => new[] { $"model.vision_model.encoder.layers.{i}.layer_norm1", $"model.vision_model.encoder.layers.{i}.layer_norm2" })
            .Append("model.vision_model.post_layernorm");
        tensors.AddRange(visionNorms.SelectMany(norm => new ExpectedTensor[] { new($"{norm}.weight", [v.HiddenSize]), new($"{norm}.bias", [v.HiddenSize]) }));
        foreach (LinearShape linear in Idefics3Model.LinearShapes(config))
        {
            tensors.Add(new ExpectedTensor($"{linear.Name}.weight", [linear.OutFeatures, linear.InFeatures]));
            if (linear.HasBias)
            {
                tensors.Add(new ExpectedTensor($"{linear.Name}.bias", [linear.OutFeatures]));
            }
        }
        tensors.Add(new ExpectedTensor("model.text_model.embed_tokens.weight", [t.VocabSize, t.HiddenSize]));
        for (int i = 0; i < t.NumHiddenLayers; i++)
        {
            string layer = $"model.text_model.layers.{i}";
            tensors.Add(new ExpectedTensor($"{layer}.input_layernorm.weight", [t.HiddenSize]));
            tensors.Add(new ExpectedTensor($"{layer}.post_attention_layernorm.weight", [t.HiddenSize]));
            if (t.HasQkNorm)
            {
                tensors.Add(new ExpectedTensor($"{layer}.self_attn.q_norm.weight", [t.HeadDim]));
                tensors.Add(new ExpectedTensor($"{layer}.self_attn.k_norm.weight", [t.HeadDim]));
            }
        }
        tensors.Add(new ExpectedTensor("model.text_model.norm.weight", [t.HiddenSize]));
        if (!config.TieWordEmbeddings)
        {
            tensors.Add(new ExpectedTensor(LmHeadWeight, [t.VocabSize, t.HiddenSize]));
        }
        // Grouped by component in model order, so that GroupBy prints vision, connector, embeddings, text, LM head.
        return tensors.OrderBy(tensor => ComponentRank(tensor.Component)).ToList();
    }

    private static int ComponentRank(string component) =>
        Array.IndexOf([VisionComponent, ConnectorComponent, EmbeddingsComponent, TextComponent, LmHeadComponent], component);
}
