using System.Diagnostics;
using CommandLine;
using CommandLine.Text;
using NativeVlm.Adapters;
using NativeVlm.Batches;
using NativeVlm.Data;
using NativeVlm.Generation;
using NativeVlm.IO;
using NativeVlm.Models;
using NativeVlm.Quantization;
using NativeVlm.Tensors;
using NativeVlm.Text;

namespace NativeVlm.Cli;

[Verb("generate", HelpText = "Generate text from image(s) + a prompt, from each sample of a parquet/JSON file, or from token ids " +
                             "(--inputs), with a KV cache; greedy or sampling as transformers' generate. Streams the text, then a summary line.")]
public sealed class GenerateOptions
{
    [Usage(ApplicationAlias = "nativevlm")]
    public static IEnumerable<Example> Examples =>
    [
        UsageExample.Of("Describe a picture with a fine-tuned adapter", new GenerateOptions
        {
            Model = "SmolVLM-256M-Instruct", Adapter = "runs/dpo", Images = ["photo.jpg"], Prompt = "What is in this picture?",
            MaxNewTokens = 64,
        }),
        UsageExample.Of("Generate from transformers' token ids and print the new ids", new GenerateOptions
        {
            Model = "tests/fixtures/tiny-idefics3", Inputs = "tests/fixtures/generate-greedy/inputs.safetensors", Case = "prompt.0",
            MaxNewTokens = 12,
        }),
    ];

    [Option("model", Required = true, HelpText = "Hugging Face snapshot folder: config.json and safetensors; with --prompt or --samples also " +
                                                 "tokenizer.json, tokenizer_config.json (chat template) and preprocessor_config.json. " +
                                                 "generation_config.json, when present, gives the defaults of the decoding flags.")]
    public string Model { get; set; } = "";

    [Option("image", HelpText = "Image file(s) for --prompt, in order (e.g. --image a.png b.jpg); default none.")]
    public IEnumerable<string> Images { get; set; } = [];

    [Option("prompt", HelpText = "The user's text: one user message holding the --image files, then this text, rendered with the " +
                                 "model's chat template and its generation prompt. One of --prompt, --samples, --inputs is required.")]
    public string? Prompt { get; set; }

    [Option("samples", HelpText = "Generate for every sample of a file: a JSON list of {\"images\": [paths], \"prompt\": \"...\"}, or parquet " +
                                  "(a file or a dataset folder) in the rlaif-v layout (the prompt messages) or the_cauldron layout (the first user turn). " +
                                  "One of --prompt, --samples, --inputs is required.")]
    public string? Samples { get; set; }

    [Option("split", Default = "train", HelpText = "--samples parquet: the split to read, e.g. test or train[:10].")]
    public string Split { get; set; } = "train";

    [Option("inputs", HelpText = "safetensors holding input_ids, attention_mask and optionally pixel_values, pixel_attention_mask (as compare reads " +
                                 "them; a left-padded batch is generated as one batch); prints the generated ids. No tokenizer needed. " +
                                 "One of --prompt, --samples, --inputs is required.")]
    public string? Inputs { get; set; }

    [Option("case", HelpText = "--inputs: the case to run, the name prefix of its tensors without the dot (e.g. prompt.0 or batch); " +
                               "default the file's only case.")]
    public string? Case { get; set; }

    [Option("adapter", HelpText = "PEFT LoRA/DoRA adapter folder (adapter_config.json, adapter_model.safetensors) applied to the model; default none.")]
    public string? Adapter { get; set; }

    [Option("max_new_tokens", HelpText = "Most new tokens per sample (default: generation_config.json's max_new_tokens, else 20).")]
    public int? MaxNewTokens { get; set; }

    [Option("do_sample", HelpText = "true: sample with temperature, top_k and top_p; false: greedy (default: generation_config.json's do_sample, else false).")]
    public bool? DoSample { get; set; }

    [Option("temperature", HelpText = "Sampling: logits are divided by it, > 0 (default: generation_config.json's, else 1.0).")]
    public double? Temperature { get; set; }

    [Option("top_k", HelpText = "Sampling: keep the k most likely tokens, 0 = off (default: generation_config.json's, else 50).")]
    public int? TopK { get; set; }

    [Option("top_p", HelpText = "Sampling: keep the smallest set of most likely tokens whose probability reaches top_p, in [0, 1], 1 = off " +
                                "(default: generation_config.json's, else 1.0).")]
    public double? TopP { get; set; }

    [Option("seed", Default = 0UL, HelpText = "Seed of the sampling generator: the same seed gives the same tokens.")]
    public ulong Seed { get; set; }

    [Option("eos_token_id", Separator = ',', HelpText = "Comma-separated token ids that end a sample (default: generation_config.json's eos_token_id, " +
                                                        "else config.json's text_config one, plus the tokenizer's <end_of_utterance>).")]
    public IEnumerable<int> EosTokenIds { get; set; } = [];

    [Option("output", HelpText = "JSON Lines file (replaced) with one object per sample: source, prompt, reference, output, token_ids, " +
                                 "prompt_tokens, new_tokens, stop_reason, prefill_ms, decode_ms, decode_tokens_per_s; default none.")]
    public string? Output { get; set; }

    [Option("quant", Default = BaseWeightQuantization.None, HelpText = "none, or nf4: quantise the Linear base weights at load time " +
                                                                        "(QLoRA's NF4 with double quantisation).")]
    public BaseWeightQuantization Quant { get; set; }

    [Option("device", Default = "cpu", HelpText = DeviceOption.Help)]
    public string Device { get; set; } = "cpu";

    [Option("bf16", HelpText = DeviceOption.Bf16Help)]
    public bool? Bf16 { get; set; }
}

/// <summary>
/// nativevlm generate: loads the model once, then generates for each prompt (one, each sample of a file,
/// or one case of token ids) with <see cref="Generator"/>, streaming text to stdout and ending each with
/// a summary line; --output logs every row. Exit 0 when everything ran.
/// </summary>
public static class GenerateCommand
{
    private const string EndOfUtterance = "<end_of_utterance>";

    public static int Run(GenerateOptions options) => DataInputErrors.Report(() => Generate(options));

    private static int Generate(GenerateOptions options)
    {
        List<string> images = options.Images.ToList();
        CheckSources(options, images);
        if (options.Output != null && Path.GetDirectoryName(Path.GetFullPath(options.Output)) is { } folder && !Directory.Exists(folder))
        {
            throw new DirectoryNotFoundException($"--output {options.Output}: folder {folder} does not exist");
        }

        Idefics3Config config = Idefics3Config.Load(options.Model);
        GenerationConfig defaults = GenerationConfig.Load(options.Model);
        // Token ids need no tokenizer; text does, with its chat template and image processor.
        VlmProcessor? processor = options.Inputs == null ? VlmProcessor.Load(options.Model) : null;
        ByteLevelBpeTokenizer? tokenizer = processor?.Tokenizer
            ?? (File.Exists(Path.Combine(options.Model, ByteLevelBpeTokenizer.FileName)) ? ByteLevelBpeTokenizer.Load(options.Model) : null);
        GenerationSettings settings = Settings(options, config, defaults, tokenizer);
        Idefics3Inputs? inputs = options.Inputs != null ? ReadInputs(options.Inputs, options.Case) : null;
        GenerationPrompts? prompts = processor != null ? new GenerationPrompts(processor) : null;
        // Images are read before the weights, so that a bad one is reported at once.
        GenerationPrompt? single = options.Prompt != null ? prompts!.FromImageFiles(images, options.Prompt) : null;

        using Context ctx = DeviceOption.Open(options.Device, options.Bf16);
        using Idefics3Model model = ModelLoading.Model(options.Model, ctx, options.Quant);
        using LoraAdapterSet? adapters = ModelLoading.Adapter(model, options.Adapter);
        Console.WriteLine((settings.DoSample
            ? $"sampling: temperature {settings.Temperature}, top_k {settings.TopK}, top_p {settings.TopP}, seed {settings.Seed}"
            : "greedy") + $"; max_new_tokens {settings.MaxNewTokens}, eos ids [{string.Join(", ", settings.EosTokenIds)}]");

        using GenerationLog? log = options.Output == null ? null : new GenerationLog(options.Output);
        if (inputs != null)
        {
            GenerateIds(model, inputs, $"{options.Inputs}: case {options.Case ?? "(unnamed)"}", settings, tokenizer, log);
            return 0;
        }
        if (single != null)
        {
            GenerateText(model, single, settings, processor!.Tokenizer, log);
            return 0;
        }
        var summary = new DatasetSummary();
        BadRowPolicy policy = BadRowPolicy.SkipAndWarn(bad => Console.Error.WriteLine($"warning: skipped {bad} ({DatasetSummary.Describe(bad.Reason)})"));
        int generated = GenerateSamplesAsync(model, prompts!, options, settings, policy, summary, log).GetAwaiter().GetResult();
        Console.WriteLine($"generate: {generated} sample{(generated == 1 ? "" : "s")} generated, {summary.RowsSkipped} row{(summary.RowsSkipped == 1 ? "" : "s")} skipped");
        return 0;
    }

    /// <summary>Exactly one source: --prompt (with its --image files), --samples or --inputs; --case only with --inputs.</summary>
    private static void CheckSources(GenerateOptions options, List<string> images)
    {
        string[] given = new[] { ("--prompt", options.Prompt != null), ("--samples", options.Samples != null), ("--inputs", options.Inputs != null) }
            .Where(s => s.Item2).Select(s => s.Item1).ToArray();
        if (given.Length != 1)
        {
            throw new ArgumentException(given.Length == 0
                ? "nothing to generate from: give --prompt (with --image files), --samples FILE or --inputs FILE"
                : $"{string.Join(" and ", given)} were both given: generate takes one of --prompt, --samples, --inputs");
        }
        if (images.Count > 0 && options.Prompt == null)
        {
            throw new ArgumentException("--image goes with --prompt (samples and inputs carry their own images)");
        }
        if (options.Case != null && options.Inputs == null)
        {
            throw new ArgumentException("--case picks a case of --inputs, which was not given");
        }
        if (options.Split != "train" && options.Samples == null)
        {
            throw new ArgumentException("--split picks the rows of --samples, which was not given");
        }
    }

    /// <summary>The flags over generation_config.json over transformers' defaults; eos and pad as <see cref="GenerationConfig"/> resolves them.</summary>
    private static GenerationSettings Settings(GenerateOptions options, Idefics3Config config, GenerationConfig defaults, ByteLevelBpeTokenizer? tokenizer)
    {
        List<int> eosOverride = options.EosTokenIds.ToList();
        IReadOnlyList<int> eos = eosOverride.Count > 0 ? eosOverride : defaults.ResolveEosTokenIds(config, tokenizer?.TokenToId(EndOfUtterance));
        int vocab = config.Text.VocabSize;
        int[] outside = eos.Where(id => id < 0 || id >= vocab).ToArray();
        if (outside.Length > 0)
        {
            throw new ArgumentException($"eos token id {outside[0]} is outside the vocabulary (0..{vocab - 1})");
        }
        var settings = new GenerationSettings(
            MaxNewTokens: options.MaxNewTokens ?? defaults.MaxNewTokens ?? GenerationSettings.DefaultMaxNewTokens,
            DoSample: options.DoSample ?? defaults.DoSample ?? false,
            Temperature: options.Temperature ?? defaults.Temperature ?? GenerationSettings.DefaultTemperature,
            TopK: options.TopK ?? defaults.TopK ?? GenerationSettings.DefaultTopK,
            TopP: options.TopP ?? defaults.TopP ?? GenerationSettings.DefaultTopP,
            Seed: options.Seed,
            EosTokenIds: eos,
            PadTokenId: defaults.ResolvePadTokenId(config, eos));
        settings.Validate();
        // Greedy search adds no warper: as transformers does, say so rather than ignore the flags silently.
        string[] unused = new[] { ("--temperature", options.Temperature != null), ("--top_k", options.TopK != null), ("--top_p", options.TopP != null) }
            .Where(f => f.Item2 && !settings.DoSample).Select(f => f.Item1).ToArray();
        if (unused.Length > 0)
        {
            Console.Error.WriteLine($"generate: warning: {string.Join(", ", unused)} only apply with --do_sample true; this run is greedy");
        }
        return settings;
    }

    /// <summary>The case <paramref name="caseName"/> of an inputs file, or its only case when none is named.</summary>
    private static Idefics3Inputs ReadInputs(string path, string? caseName)
    {
        using SafeTensorsReader file = SafeTensorsReader.Open(path);
        IReadOnlyList<string> prefixes = Idefics3Inputs.CasePrefixes(file);
        string Names() => string.Join(", ", prefixes.Select(p => p.Length == 0 ? "(unnamed)" : p.TrimEnd('.')));
        if (caseName == null)
        {
            return prefixes.Count == 1
                ? Idefics3Inputs.Read(file, prefixes[0])
                : throw new ArgumentException($"{path} holds {prefixes.Count} cases ({Names()}): pick one with --case");
        }
        string prefix = caseName + ".";
        return prefixes.Contains(prefix)
            ? Idefics3Inputs.Read(file, prefix)
            : throw new ArgumentException($"{path}: no case '{caseName}' (no tensor {prefix}input_ids); its cases are {Names()}");
    }

    /// <summary>Token ids in, token ids out: every row of the case as one batch, its new ids printed per row.</summary>
    private static void GenerateIds(Idefics3Model model, Idefics3Inputs inputs, string source, GenerationSettings settings,
        ByteLevelBpeTokenizer? tokenizer, GenerationLog? log)
    {
        GenerationResult result = Generator.Generate(model, inputs, settings);
        for (int b = 0; b < inputs.Batch; b++)
        {
            GeneratedRow row = result.Rows[b];
            int promptTokens = inputs.AttentionMask.Skip(b * inputs.SeqLen).Take(inputs.SeqLen).Count(m => m != 0);
            Console.WriteLine($"row {b}: {string.Join(" ", row.TokenIds)}");
            Console.WriteLine(Summary(promptTokens, row, result, $"row {b}: "));
            log?.Write(new GenerationRecord($"{source}: row {b}", Prompt: null, Reference: null,
                tokenizer?.Decode(row.TokenIds, skipSpecialTokens: true), row.TokenIds, promptTokens, row.StopReason,
                result.PrefillTime, result.DecodeTime, result.DecodeTokensPerSecond));
        }
    }

    /// <summary>One prompt, its text streamed to stdout as the tokens arrive, then its summary line.</summary>
    private static void GenerateText(Idefics3Model model, GenerationPrompt prompt, GenerationSettings settings,
        ByteLevelBpeTokenizer tokenizer, GenerationLog? log)
    {
        var streamer = new TokenStreamer(tokenizer);
        GenerationResult result = Generator.Generate(model, prompt.ToInputs(), settings, onStep: tokens => Console.Write(streamer.Push(tokens[0])));
        Console.WriteLine(streamer.Flush());
        GeneratedRow row = result.Rows[0];
        Console.WriteLine(Summary(prompt.InputIds.Length, row, result, ""));
        log?.Write(new GenerationRecord(prompt.Source, prompt.Text, prompt.Reference, streamer.Text, row.TokenIds,
            prompt.InputIds.Length, row.StopReason, result.PrefillTime, result.DecodeTime, result.DecodeTokensPerSecond));
    }

    private static async Task<int> GenerateSamplesAsync(Idefics3Model model, GenerationPrompts prompts, GenerateOptions options,
        GenerationSettings settings, BadRowPolicy policy, DatasetSummary summary, GenerationLog? log)
    {
        int generated = 0;
        await foreach (GenerationPrompt prompt in GenerationSamples.ReadAsync(prompts, options.Samples!, options.Split, policy, summary).ConfigureAwait(false))
        {
            Console.WriteLine($"== {prompt.Source}");
            GenerateText(model, prompt, settings, prompts.Processor.Tokenizer, log);
            generated++;
        }
        return generated;
    }

    private static string Summary(int promptTokens, GeneratedRow row, GenerationResult result, string prefix) =>
        $"generate: {prefix}{promptTokens} prompt tokens, {row.TokenIds.Length} new tokens, stop {GenerationRecord.Name(row.StopReason)}, " +
        $"prefill {result.PrefillTime.TotalMilliseconds:F1} ms, decode " +
        (result.DecodeTokensPerSecond is double rate ? $"{rate:F1} tokens/s" : "- (one token)");
}
