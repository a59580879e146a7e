using NativeVlm.Batches;
using NativeVlm.Models;
using NativeVlm.Text;
using NativeVlm.Vision;

namespace NativeVlm.Checks;

/// <summary>
/// The processor files of a snapshot, each part loaded on its own so that a missing or broken file
/// is a finding instead of the end of the inspection (VlmProcessor.Load, which training uses, stops at
/// the first inconsistency). A part is null when its file is absent or could not be loaded; the
/// reason is in <see cref="LoadFindings"/>.
/// </summary>
public sealed class SnapshotProcessor
{
    private SnapshotProcessor(string directory, Idefics3ImageProcessor? imageProcessor, int? processorImageSeqLen, Idefics3Prompt prompt,
        ByteLevelBpeTokenizer? tokenizer, ChatTemplate? template, IReadOnlyList<Finding> loadFindings)
    {
        Directory = directory;
        ImageProcessor = imageProcessor;
        ProcessorImageSeqLen = processorImageSeqLen;
        Prompt = prompt;
        Tokenizer = tokenizer;
        Template = template;
        LoadFindings = loadFindings;
    }

    public string Directory { get; }

    /// <summary>preprocessor_config.json's settings.</summary>
    public Idefics3ImageProcessor? ImageProcessor { get; }

    /// <summary>processor_config.json's image_seq_len; null without the file.</summary>
    public int? ProcessorImageSeqLen { get; }

    /// <summary>
    /// The expansion the processor writes: processor_config.json's image_seq_len (config.json's when the
    /// file is absent) and the image token strings of tokenizer_config.json's extra_special_tokens.
    /// </summary>
    public Idefics3Prompt Prompt { get; }

    public ByteLevelBpeTokenizer? Tokenizer { get; }

    public ChatTemplate? Template { get; }

    /// <summary>Files that exist but could not be loaded (errors); absent files are not findings.</summary>
    public IReadOnlyList<Finding> LoadFindings { get; }

    public static SnapshotProcessor Load(string directory, Idefics3Config config)
    {
        var findings = new List<Finding>();
        T? Part<T>(string file, Func<T> load) where T : class
        {
            if (!File.Exists(Path.Combine(directory, file)))
            {
                return null;
            }
            try
            {
                return load();
            }
            catch (Exception e) when (e is ConfigException or TokenizerException or ChatTemplateException or IOException or InvalidDataException)
            {
                findings.Add(Finding.Error(file, e.Message));
                return null;
            }
        }

        Idefics3ImageProcessor? imageProcessor = Part(Idefics3ImageProcessorConfig.FileName,
            () => new Idefics3ImageProcessor(Idefics3ImageProcessorConfig.Load(directory)));
        int? processorImageSeqLen = Part(Idefics3Prompt.FileName, () => Idefics3Prompt.Load(directory))?.ImageSeqLen;
        ImageTokens tokens = Part(VlmProcessor.TokenizerConfigFileName,
            () => ImageTokens.Load(Path.Combine(directory, VlmProcessor.TokenizerConfigFileName))) ?? ImageTokens.Idefics3;
        var prompt = new Idefics3Prompt(processorImageSeqLen ?? config.ImageSeqLen, tokens);
        ByteLevelBpeTokenizer? tokenizer = Part(ByteLevelBpeTokenizer.FileName, () => ByteLevelBpeTokenizer.Load(directory));
        ChatTemplate? template = LoadTemplate(directory, findings);
        return new SnapshotProcessor(directory, imageProcessor, processorImageSeqLen, prompt, tokenizer, template, findings);
    }

    /// <summary>
    /// The chat template, or null when no file holds one (ChatTemplate.Load's FileNotFoundException: a
    /// tokenizer_config.json without chat_template is no template, not a broken file).
    /// </summary>
    private static ChatTemplate? LoadTemplate(string directory, List<Finding> findings)
    {
        try
        {
            return ChatTemplate.Load(directory);
        }
        catch (FileNotFoundException)
        {
            return null;
        }
        catch (Exception e) when (e is ChatTemplateException or ConfigException or IOException or InvalidDataException)
        {
            findings.Add(Finding.Error("chat template", e.Message));
            return null;
        }
    }
}
